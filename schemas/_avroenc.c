/* Compiled Avro binary encoder and decoder for evledger events.
 *
 * Walks a "plan" (nested tuples built by schemas/encoder.py from the Avro schema) and reads the
 * event dataclass's attributes directly, so no intermediate dict is built. Output is byte-for-byte
 * what fastavro.schemaless_writer produces (checked by tests/unit/test_encoder.py).
 *
 * Plan opcodes: (1,) long  (2,) string  (3,) boolean  (4,) double  (5,) bytes
 *               (6,) timestamp-micros from datetime  (7, {symbol: index}) enum
 *               (8, plan) ["null", plan] union  (9, plan) array
 *               (10, (attr names...), (plans...)) record
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include "evledger_buf.h"

static int put_long(Buf *b, long long v) {
    unsigned long long z = ((unsigned long long)v << 1) ^ (unsigned long long)(v >> 63);
    if (grow(b, 10)) return -1;
    while (z & ~0x7FULL) {
        b->buf[b->len++] = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    b->buf[b->len++] = (char)z;
    return 0;
}

static int put_raw(Buf *b, const char *s, Py_ssize_t n) {
    if (put_long(b, n)) return -1;
    if (grow(b, n)) return -1;
    memcpy(b->buf + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int put_timestamp_micros(Buf *b, PyObject *obj) {
    if (!PyDateTime_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "expected datetime, got %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    long long days = days_from_civil(PyDateTime_GET_YEAR(obj), PyDateTime_GET_MONTH(obj),
                                     PyDateTime_GET_DAY(obj));
    long long secs = days * 86400LL + PyDateTime_DATE_GET_HOUR(obj) * 3600LL +
                     PyDateTime_DATE_GET_MINUTE(obj) * 60LL + PyDateTime_DATE_GET_SECOND(obj);
    long long micros = PyDateTime_DATE_GET_MICROSECOND(obj);
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(obj);
    if (tz != Py_None && tz != PyDateTime_TimeZone_UTC) {
        PyObject *offset = PyObject_CallMethod(obj, "utcoffset", NULL);
        if (offset == NULL) return -1;
        if (offset != Py_None) {
            secs -= PyDateTime_DELTA_GET_DAYS(offset) * 86400LL + PyDateTime_DELTA_GET_SECONDS(offset);
            micros -= PyDateTime_DELTA_GET_MICROSECONDS(offset);
        }
        Py_DECREF(offset);
    }
    return put_long(b, secs * 1000000LL + micros);
}

static int encode(Buf *b, PyObject *obj, PyObject *plan);

static int encode_record(Buf *b, PyObject *obj, PyObject *names, PyObject *plans) {
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyObject_GetAttr(obj, PyTuple_GET_ITEM(names, i));
        if (value == NULL) return -1;
        int rc = encode(b, value, PyTuple_GET_ITEM(plans, i));
        Py_DECREF(value);
        if (rc) {
            if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
                PyObject *type, *val, *tb;
                PyErr_Fetch(&type, &val, &tb);
                PyErr_Format(PyExc_ValueError, "field %U: %S", PyTuple_GET_ITEM(names, i),
                             val ? val : Py_None);
                Py_XDECREF(type); Py_XDECREF(val); Py_XDECREF(tb);
            }
            return -1;
        }
    }
    return 0;
}

static int encode(Buf *b, PyObject *obj, PyObject *plan) {
    long op = PyLong_AsLong(PyTuple_GET_ITEM(plan, 0));
    switch (op) {
    case 1: {
        if (!PyLong_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "expected int, got %.100s", Py_TYPE(obj)->tp_name);
            return -1;
        }
        long long v = PyLong_AsLongLong(obj);
        if (v == -1 && PyErr_Occurred()) return -1;
        return put_long(b, v);
    }
    case 2: {
        if (!PyUnicode_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "expected str, got %.100s", Py_TYPE(obj)->tp_name);
            return -1;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL) return -1;
        return put_raw(b, s, n);
    }
    case 3: {
        int truth = PyObject_IsTrue(obj);
        if (truth < 0 || grow(b, 1)) return -1;
        b->buf[b->len++] = (char)(truth ? 1 : 0);
        return 0;
    }
    case 4: {
        double d = PyFloat_AsDouble(obj);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        if (grow(b, 8)) return -1;
        if (PyFloat_Pack8(d, b->buf + b->len, 1)) return -1;
        b->len += 8;
        return 0;
    }
    case 5: {
        if (!PyBytes_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(obj)->tp_name);
            return -1;
        }
        return put_raw(b, PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj));
    }
    case 6:
        return put_timestamp_micros(b, obj);
    case 7: {
        PyObject *index = PyDict_GetItemWithError(PyTuple_GET_ITEM(plan, 1), obj);
        if (index == NULL) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%R is not an enum symbol", obj);
            return -1;
        }
        return put_long(b, PyLong_AsLongLong(index));
    }
    case 8:
        if (obj == Py_None) return put_long(b, 0);
        if (put_long(b, 1)) return -1;
        return encode(b, obj, PyTuple_GET_ITEM(plan, 1));
    case 9: {
        PyObject *seq = PySequence_Fast(obj, "expected a sequence");
        if (seq == NULL) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        int rc = 0;
        if (n > 0) {
            rc = put_long(b, n);
            for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
                rc = encode(b, PySequence_Fast_GET_ITEM(seq, i), PyTuple_GET_ITEM(plan, 1));
        }
        Py_DECREF(seq);
        return rc ? rc : put_long(b, 0);
    }
    case 10:
        return encode_record(b, obj, PyTuple_GET_ITEM(plan, 1), PyTuple_GET_ITEM(plan, 2));
    default:
        PyErr_Format(PyExc_ValueError, "bad plan opcode %ld", op);
        return -1;
    }
}

static PyObject *py_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode(header: bytes, event, plan: tuple)");
        return NULL;
    }
    Buf b = {PyMem_Malloc(256), 0, 256};
    if (b.buf == NULL) return PyErr_NoMemory();
    Py_ssize_t hlen = PyBytes_GET_SIZE(args[0]);
    if (grow(&b, hlen)) { PyMem_Free(b.buf); return NULL; }
    memcpy(b.buf, PyBytes_AS_STRING(args[0]), (size_t)hlen);
    b.len = hlen;
    PyObject *result = NULL;
    if (encode(&b, args[1], args[2]) == 0) result = PyBytes_FromStringAndSize(b.buf, b.len);
    PyMem_Free(b.buf);
    return result;
}


/* ------------------------------------------------------------------------------ decoding
 * Decoding plans mirror the encoding ones, with the Python types to build:
 *   (1,) long (2,) string (3,) boolean (4,) double (5,) bytes (6,) timestamp-micros -> aware UTC
 *   (7, (members...)) enum  (8, plan) ["null", plan]  (9, plan) array
 *   (10, cls, (plans...)) record -> cls(*fields)
 * Any malformed input raises ValueError; the caller then asks fastavro for its precise error.
 */
typedef struct {
    const unsigned char *p, *end;
} Reader;

static int get_long(Reader *r, long long *out) {
    unsigned long long z = 0;
    int shift = 0;
    while (1) {
        if (r->p >= r->end) { PyErr_SetString(PyExc_ValueError, "truncated varint"); return -1; }
        unsigned char byte = *r->p++;
        z |= (unsigned long long)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) break;
        shift += 7;
        if (shift > 63) { PyErr_SetString(PyExc_ValueError, "varint too long"); return -1; }
    }
    *out = (long long)(z >> 1) ^ -(long long)(z & 1);
    return 0;
}

static int get_span(Reader *r, const char **s, Py_ssize_t *n) {
    long long len;
    if (get_long(r, &len)) return -1;
    if (len < 0 || len > r->end - r->p) {
        PyErr_SetString(PyExc_ValueError, "bad length");
        return -1;
    }
    *s = (const char *)r->p;
    *n = (Py_ssize_t)len;
    r->p += len;
    return 0;
}

static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d) {
    z += 719468;
    const long long era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (long long)yoe + era * 400 + (*m <= 2);
}

static PyObject *decode(Reader *r, PyObject *plan);

static PyObject *decode_record(Reader *r, PyObject *cls, PyObject *plans) {
    Py_ssize_t n = PyTuple_GET_SIZE(plans);
    PyObject *args = PyTuple_New(n);
    if (args == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = decode(r, PyTuple_GET_ITEM(plans, i));
        if (value == NULL) { Py_DECREF(args); return NULL; }
        PyTuple_SET_ITEM(args, i, value);
    }
    PyObject *obj = PyObject_Call(cls, args, NULL);
    Py_DECREF(args);
    return obj;
}

static PyObject *decode(Reader *r, PyObject *plan) {
    long op = PyLong_AsLong(PyTuple_GET_ITEM(plan, 0));
    long long v;
    const char *s;
    Py_ssize_t n;
    switch (op) {
    case 1:
        if (get_long(r, &v)) return NULL;
        return PyLong_FromLongLong(v);
    case 2:
        if (get_span(r, &s, &n)) return NULL;
        return PyUnicode_DecodeUTF8(s, n, "strict");
    case 3:
        if (r->p >= r->end) { PyErr_SetString(PyExc_ValueError, "truncated boolean"); return NULL; }
        if (*r->p > 1) { PyErr_SetString(PyExc_ValueError, "bad boolean"); return NULL; }
        return PyBool_FromLong(*r->p++);
    case 4: {
        if (r->end - r->p < 8) { PyErr_SetString(PyExc_ValueError, "truncated double"); return NULL; }
        double d = PyFloat_Unpack8((const char *)r->p, 1);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        r->p += 8;
        return PyFloat_FromDouble(d);
    }
    case 5:
        if (get_span(r, &s, &n)) return NULL;
        return PyBytes_FromStringAndSize(s, n);
    case 6: {
        if (get_long(r, &v)) return NULL;
        long long secs = v >= 0 ? v / 1000000 : -((-v + 999999) / 1000000);
        long long micros = v - secs * 1000000;
        long long days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
        long long rem = secs - days * 86400;
        long long y;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        if (y < 1 || y > 9999) { PyErr_SetString(PyExc_ValueError, "timestamp out of range"); return NULL; }
        return PyDateTimeAPI->DateTime_FromDateAndTime(
            (int)y, (int)m, (int)d, (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60),
            (int)micros, PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
    }
    case 7: {
        PyObject *members = PyTuple_GET_ITEM(plan, 1);
        if (get_long(r, &v)) return NULL;
        if (v < 0 || v >= PyTuple_GET_SIZE(members)) {
            PyErr_SetString(PyExc_ValueError, "enum index out of range");
            return NULL;
        }
        PyObject *member = PyTuple_GET_ITEM(members, (Py_ssize_t)v);
        Py_INCREF(member);
        return member;
    }
    case 8:
        if (get_long(r, &v)) return NULL;
        if (v == 0) Py_RETURN_NONE;
        if (v != 1) { PyErr_SetString(PyExc_ValueError, "bad union index"); return NULL; }
        return decode(r, PyTuple_GET_ITEM(plan, 1));
    case 9: {
        PyObject *list = PyList_New(0);
        if (list == NULL) return NULL;
        while (1) {
            long long count;
            if (get_long(r, &count)) goto fail;
            if (count == 0) break;
            if (count < 0) {  /* a negative count is followed by the block's size in bytes */
                long long size;
                count = -count;
                if (get_long(r, &size)) goto fail;
            }
            if (count > r->end - r->p) { PyErr_SetString(PyExc_ValueError, "bad array count"); goto fail; }
            for (long long i = 0; i < count; i++) {
                PyObject *item = decode(r, PyTuple_GET_ITEM(plan, 1));
                if (item == NULL || PyList_Append(list, item)) { Py_XDECREF(item); goto fail; }
                Py_DECREF(item);
            }
        }
        return list;
    fail:
        Py_DECREF(list);
        return NULL;
    }
    case 10:
        return decode_record(r, PyTuple_GET_ITEM(plan, 1), PyTuple_GET_ITEM(plan, 2));
    default:
        PyErr_Format(PyExc_ValueError, "bad plan opcode %ld", op);
        return NULL;
    }
}

static PyObject *py_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "decode(data: bytes-like, start: int, plan: tuple)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE)) return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if ((start == -1 && PyErr_Occurred()) || start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    Reader r = {(const unsigned char *)view.buf + start, (const unsigned char *)view.buf + view.len};
    PyObject *obj = decode(&r, args[2]);
    if (obj != NULL && r.p != r.end) {
        Py_DECREF(obj);
        obj = NULL;
        PyErr_Format(PyExc_ValueError, "%zd trailing bytes", (Py_ssize_t)(r.end - r.p));
    }
    PyBuffer_Release(&view);
    return obj;
}

/* encode_each(events, routes) -> list[bytes]: routes maps an event's type to (header, plan).
 * One call for a whole batch, in order; raises KeyError for a type without a route. */
static PyObject *py_encode_each(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "encode_each(events, routes: dict)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "events must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    Buf b = {PyMem_Malloc(512), 0, 512};
    if (out == NULL || b.buf == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *route = PyDict_GetItemWithError(args[1], (PyObject *)Py_TYPE(event));
        if (route == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, (PyObject *)Py_TYPE(event));
            goto fail;
        }
        PyObject *header = PyTuple_GET_ITEM(route, 0);
        b.len = 0;
        if (grow(&b, PyBytes_GET_SIZE(header))) goto fail;
        memcpy(b.buf, PyBytes_AS_STRING(header), (size_t)PyBytes_GET_SIZE(header));
        b.len = PyBytes_GET_SIZE(header);
        if (encode(&b, event, PyTuple_GET_ITEM(route, 1))) goto fail;
        PyObject *value = PyBytes_FromStringAndSize(b.buf, b.len);
        if (value == NULL) goto fail;
        PyList_SET_ITEM(out, i, value);
    }
    PyMem_Free(b.buf);
    Py_DECREF(seq);
    return out;
fail:
    PyMem_Free(b.buf);
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_FASTCALL,
     "encode(header, event, plan) -> header + Avro binary body"},
    {"encode_each", (PyCFunction)(void (*)(void))py_encode_each, METH_FASTCALL,
     "encode_each(events, {type: (header, plan)}) -> [header + Avro body, ...]"},
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_FASTCALL,
     "decode(data, start, plan) -> event built from the Avro body at data[start:]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avroenc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__avroenc(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}
