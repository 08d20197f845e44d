#include "sixgate/arena.h"

#include <stdalign.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct sg_arena_chunk {
    struct sg_arena_chunk *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    bool mapped; /* from mmap(2), not malloc */
    alignas(max_align_t) unsigned char data[];
};

#define ALIGN (alignof(max_align_t))
/* Chunks this big or bigger are mapped from the kernel and unmapped when
 * the arena is freed. From malloc they would come from its heap once glibc
 * has raised its mmap threshold (it does when a mapped block is freed), and
 * the freed map of a large snapshot would stay in the process, scattered
 * between newer allocations: RSS grew with every reload of a large map. */
#define MAP_MIN (64u * 1024u)

static struct sg_arena_chunk *chunk_new(size_t want)
{
    size_t bytes = sizeof(struct sg_arena_chunk) + want;
    struct sg_arena_chunk *c;
    bool mapped = bytes >= MAP_MIN;
    if (mapped) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        c = p == MAP_FAILED ? NULL : p;
    } else {
        c = malloc(bytes);
    }
    if (c != NULL) {
        c->size = want;
        c->used = 0;
        c->mapped = mapped;
    }
    return c;
}

static void chunk_free(struct sg_arena_chunk *c)
{
    if (c->mapped)
        munmap(c, sizeof(*c) + c->size);
    else
        free(c);
}

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
        struct sg_arena_chunk *n = chunk_new(want);
        if (n == NULL)
            return NULL;
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
        chunk_free(c);
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
        chunk_free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}
