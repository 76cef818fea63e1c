/* A growable byte buffer for evledger's C extensions (schemas/_avroenc.c, connectors/_copytext.c).
 * Include after Python.h. grow() makes room for `need` more bytes, doubling the capacity; it sets
 * MemoryError and returns -1 when the allocation fails. The owner frees buf with PyMem_Free. */
#ifndef EVLEDGER_BUF_H
#define EVLEDGER_BUF_H

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

#endif
