/* Small helpers that every module of src/ may use; private to src/. */
#ifndef SIXGATE_UTIL_H
#define SIXGATE_UTIL_H

#include <stddef.h>

/* The struct of <type> that has <ptr> as its member <member>. */
#define SG_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* The number of elements of the array <a> (an array, not a pointer). */
#define SG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
