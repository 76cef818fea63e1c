/* Compiled Avro binary encoder for evledger events.
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

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Buf;

static int grow(Buf *b, Py_ssize_t need) {
    if (b->len + need <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + need) cap *= 2;
    char *n = PyMem_Realloc(b->buf, (size_t)cap);
    if (n == NULL) { PyErr_NoMemory(); return -1; }
    b->buf = n;
    b->cap = cap;
    return 0;
}

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

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_FASTCALL,
     "encode(header, event, plan) -> header + Avro binary body"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_avroenc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__avroenc(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    return PyModule_Create(&module);
}
