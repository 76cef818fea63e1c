/* COPY text lines of journal entries, compiled: connectors.ledger_store.entry_text.
 *
 * entry_lines(stored_entries) -> bytes is exactly "".join(ledger_store._entry_lines(entries))
 * encoded as UTF-8 (tests/unit/test_ledger_store_rows.py holds it to that, byte for byte): one
 * line per entry, in the column order of ledger_store.write_entries, with COPY text escaping
 * (backslash, tab, newline and CR) and the account codes quoted as array elements.
 * Each item is a StoredEntry (entry, event_type, provider); entry is a ledger.journal.JournalEntry.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "evledger_buf.h"

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (grow(b, n)) return -1;
    memcpy(b->buf + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static int put_char(Buf *b, char c) { return put(b, &c, 1); }

/* str(value) as UTF-8, unescaped: ids, class names, enum values, timestamps, currencies. */
static int put_raw(Buf *b, PyObject *value) {
    Py_ssize_t n;
    const char *s;
    if (PyUnicode_Check(value)) {
        s = PyUnicode_AsUTF8AndSize(value, &n);
        return s == NULL ? -1 : put(b, s, n);
    }
    PyObject *text = PyObject_Str(value);
    if (text == NULL) return -1;
    s = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = s == NULL ? -1 : put(b, s, n);
    Py_DECREF(text);
    return rc;
}

/* One COPY text byte: backslash, tab, newline and CR become escape sequences. */
static int put_copy_escaped(Buf *b, const char *s, Py_ssize_t n, int array_element) {
    if (grow(b, 4 * n + 2)) return -1;
    char *o = b->buf + b->len;
    if (array_element) *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':  /* array element: \\ ; then COPY doubles each */
            if (array_element) { memcpy(o, "\\\\\\\\", 4); o += 4; }
            else { memcpy(o, "\\\\", 2); o += 2; }
            break;
        case '"':
            if (array_element) { memcpy(o, "\\\\\"", 3); o += 3; }
            else *o++ = c;
            break;
        case '\t': memcpy(o, "\\t", 2); o += 2; break;
        case '\n': memcpy(o, "\\n", 2); o += 2; break;
        case '\r': memcpy(o, "\\r", 2); o += 2; break;
        default: *o++ = c;
        }
    }
    if (array_element) *o++ = '"';
    b->len = o - b->buf;
    return 0;
}

/* A nullable text column: \N, or the escaped UTF-8 of the str. */
static int put_text(Buf *b, PyObject *value) {
    if (value == Py_None) return put(b, "\\N", 2);
    if (!PyUnicode_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "COPY text field must be str or None");
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    return s == NULL ? -1 : put_copy_escaped(b, s, n, 0);
}

static int put_int(Buf *b, PyObject *value) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow) return put_raw(b, value);
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%lld", v);
    return put(b, digits, n);
}

static PyObject *s_entry_id, *s_event_id, *s_payment_id, *s_network_id, *s_occurred_at, *s_kind,
    *s_value, *s_postings, *s_account, *s_amount, *s_code, *s_currency, *s_amount_minor,
    *s_station, *s_isoformat;

/* The four array columns of one entry: {accounts}\t{currencies}\t{amounts}\t{stations}. Each
 * posting's account code, currency, amount and station are read once, then written column by
 * column; the stations column is \N (NULL) when no posting has one. */
#define MAX_POSTINGS 64
static int put_postings(Buf *b, PyObject *postings) {
    PyObject *seq = PySequence_Fast(postings, "postings must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *fields[4][MAX_POSTINGS] = {{NULL}};
    int stations = 0;
    int rc = -1;
    if (n > MAX_POSTINGS) {
        PyErr_SetString(PyExc_ValueError, "more postings in one entry than entry_lines takes");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *account = PyObject_GetAttr(items[i], s_account);
        if (account == NULL) goto done;
        fields[0][i] = PyObject_GetAttr(account, s_code);
        Py_DECREF(account);
        PyObject *amount = fields[0][i] ? PyObject_GetAttr(items[i], s_amount) : NULL;
        if (amount == NULL) goto done;
        fields[1][i] = PyObject_GetAttr(amount, s_currency);
        fields[2][i] = fields[1][i] ? PyObject_GetAttr(amount, s_amount_minor) : NULL;
        Py_DECREF(amount);
        if (fields[2][i] == NULL) goto done;
        if (!PyUnicode_Check(fields[0][i])) {
            PyErr_SetString(PyExc_TypeError, "account code must be str");
            goto done;
        }
        fields[3][i] = PyObject_GetAttr(items[i], s_station);
        if (fields[3][i] == NULL) goto done;
        if (fields[3][i] != Py_None) {
            if (!PyUnicode_Check(fields[3][i])) {
                PyErr_SetString(PyExc_TypeError, "posting station must be str or None");
                goto done;
            }
            stations = 1;
        }
    }
    for (int column = 0; column < 3; column++) {
        if ((column && put_char(b, '\t')) || put_char(b, '{')) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && put_char(b, ',')) goto done;
            PyObject *field = fields[column][i];
            if (column == 0) {
                Py_ssize_t len;
                const char *code = PyUnicode_AsUTF8AndSize(field, &len);
                if (code == NULL || put_copy_escaped(b, code, len, 1)) goto done;
            } else if (column == 1 ? put_raw(b, field) : put_int(b, field)) {
                goto done;
            }
        }
        if (put_char(b, '}')) goto done;
    }
    if (put_char(b, '\t')) goto done;
    if (!stations) {
        if (put(b, "\\N", 2)) goto done;
    } else {
        if (put_char(b, '{')) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && put_char(b, ',')) goto done;
            if (fields[3][i] == Py_None) {
                if (put(b, "NULL", 4)) goto done;
                continue;
            }
            Py_ssize_t len;
            const char *station = PyUnicode_AsUTF8AndSize(fields[3][i], &len);
            if (station == NULL || put_copy_escaped(b, station, len, 1)) goto done;
        }
        if (put_char(b, '}')) goto done;
    }
    rc = 0;
done:
    for (int column = 0; column < 4; column++)
        for (Py_ssize_t i = 0; i < n && i < MAX_POSTINGS; i++) Py_XDECREF(fields[column][i]);
    Py_DECREF(seq);
    return rc;
}

/* The columns every entry of one event shares: event_id, event_type, payment_id, network_id,
 * provider (formatted once per event, as the Python version does). */
static int put_shared(Buf *b, PyObject *entry, PyObject *event_type, PyObject *provider) {
    static PyObject *const *names[] = {&s_event_id, NULL, &s_payment_id, &s_network_id};
    for (int i = 0; i < 4; i++) {
        if (i && put_char(b, '\t')) return -1;
        if (names[i] == NULL) {
            if (put_raw(b, event_type)) return -1;
            continue;
        }
        PyObject *value = PyObject_GetAttr(entry, *names[i]);
        if (value == NULL) return -1;
        int failed = put_text(b, value);
        Py_DECREF(value);
        if (failed) return -1;
    }
    return put_char(b, '\t') || put_text(b, provider);
}

static PyObject *entry_lines(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "entry_lines takes a sequence of StoredEntry");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Buf out = {PyMem_Malloc(4096), 0, 4096}, shared = {PyMem_Malloc(256), 0, 256};
    PyObject *result = NULL, *shared_of = NULL, *at = NULL, *at_of = NULL;
    if (out.buf == NULL || shared.buf == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *stored = items[i];
        if (!PyTuple_Check(stored) || PyTuple_GET_SIZE(stored) != 3) {
            PyErr_SetString(PyExc_TypeError, "entry_lines takes StoredEntry tuples");
            goto done;
        }
        PyObject *entry = PyTuple_GET_ITEM(stored, 0);
        PyObject *event_id = PyObject_GetAttr(entry, s_event_id);
        if (event_id == NULL) goto done;
        if (event_id != shared_of) {  /* a new event: its shared columns */
            Py_XDECREF(shared_of);
            shared_of = event_id;
            Py_INCREF(shared_of);
            shared.len = 0;
            if (put_shared(&shared, entry, PyTuple_GET_ITEM(stored, 1),
                           PyTuple_GET_ITEM(stored, 2))) {
                Py_DECREF(event_id);
                goto done;
            }
        }
        Py_DECREF(event_id);
        /* The timestamp is formatted once per datetime object: an event's entries share one,
           except those dated otherwise (a capture's revenue on the supply date). */
        PyObject *occurred = PyObject_GetAttr(entry, s_occurred_at);
        if (occurred == NULL) goto done;
        if (occurred != at_of) {
            Py_XSETREF(at_of, Py_NewRef(occurred));
            Py_XSETREF(at, PyObject_CallMethodNoArgs(occurred, s_isoformat));
        }
        Py_DECREF(occurred);
        if (at == NULL) goto done;
        PyObject *entry_id = PyObject_GetAttr(entry, s_entry_id);
        PyObject *kind = entry_id ? PyObject_GetAttr(entry, s_kind) : NULL;
        /* A StrEnum member is a str holding its value: no call of the slow .value property. */
        PyObject *kind_value = kind == NULL ? NULL
            : PyUnicode_Check(kind) ? Py_NewRef(kind) : PyObject_GetAttr(kind, s_value);
        PyObject *postings = kind_value ? PyObject_GetAttr(entry, s_postings) : NULL;
        int failed = postings == NULL
            || put_raw(&out, entry_id) || put_char(&out, '\t')
            || put(&out, shared.buf, shared.len) || put_char(&out, '\t')
            || put_raw(&out, kind_value) || put_char(&out, '\t')
            || put_raw(&out, at) || put_char(&out, '\t')
            || put_postings(&out, postings) || put_char(&out, '\n');
        Py_XDECREF(entry_id);
        Py_XDECREF(kind);
        Py_XDECREF(kind_value);
        Py_XDECREF(postings);
        if (failed) goto done;
    }
    result = PyBytes_FromStringAndSize(out.buf, out.len);
done:
    PyMem_Free(out.buf);
    PyMem_Free(shared.buf);
    Py_XDECREF(shared_of);
    Py_XDECREF(at);
    Py_XDECREF(at_of);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"entry_lines", entry_lines, METH_O,
     "COPY text (UTF-8 bytes) of StoredEntry items, as ledger_store._entry_lines joins them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_copytext", NULL, -1, methods};

PyMODINIT_FUNC PyInit__copytext(void) {
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_entry_id, "entry_id"}, {&s_event_id, "event_id"}, {&s_payment_id, "payment_id"},
        {&s_network_id, "network_id"}, {&s_occurred_at, "occurred_at"}, {&s_kind, "kind"},
        {&s_value, "value"}, {&s_postings, "postings"}, {&s_account, "account"},
        {&s_amount, "amount"}, {&s_code, "code"}, {&s_currency, "currency"},
        {&s_amount_minor, "amount_minor"}, {&s_station, "station"},
        {&s_isoformat, "isoformat"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].name);
        if (*names[i].slot == NULL) return NULL;
    }
    return PyModule_Create(&module);
}
