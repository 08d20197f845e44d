#include "sixgate/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct sg_arena_chunk {
    struct sg_arena_chunk *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN (alignof(max_align_t))

void sg_arena_init(struct sg_arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    a->total = 0;
}

static void *arena_alloc(struct sg_arena *a, size_t size, size_t align)
{
    if (size > SIZE_MAX - ALIGN)
        return NULL;
    size = (size + align - 1) & ~(align - 1);
    struct sg_arena_chunk *c = a->head;
    if (c != NULL && align > 1)
        c->used = (c->used + align - 1) & ~(align - 1);
    if (c != NULL && c->used > c->size)
        c->used = c->size;
    if (c == NULL || c->size - c->used < size) {
        /* A large request gets a chunk of its own, behind the current one, so
         * that the space left in the current chunk is not wasted. */
        size_t want = size > a->chunk_size / 4 ? size : a->chunk_size;
        struct sg_arena_chunk *n = malloc(sizeof(*n) + want);
        if (n == NULL)
            return NULL;
        n->size = want;
        n->used = 0;
        a->total += sizeof(*n) + want;
        if (c != NULL && want != a->chunk_size) {
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            a->head = n;
        }
        c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void *sg_arena_alloc(struct sg_arena *a, size_t size)
{
    return arena_alloc(a, size, ALIGN);
}

char *sg_arena_strndup(struct sg_arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1, 1); /* text needs no alignment */
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void sg_arena_reset(struct sg_arena *a)
{
    struct sg_arena_chunk *keep = a->head;
    if (keep == NULL)
        return;
    struct sg_arena_chunk *c = keep->next;
    while (c != NULL) {
        struct sg_arena_chunk *next = c->next;
        a->total -= sizeof(*c) + c->size;
        free(c);
        c = next;
    }
    keep->next = NULL;
    keep->used = 0;
}

void sg_arena_free(struct sg_arena *a)
{
    struct sg_arena_chunk *c = a->head;
    while (c != NULL) {
        struct sg_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}
