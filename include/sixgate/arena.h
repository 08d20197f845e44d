/* A bump allocator for data that lives and dies together: a routing snapshot
 * (a million routes are freed with a few free() calls), or one YAML subtree. */
#ifndef SIXGATE_ARENA_H
#define SIXGATE_ARENA_H

#include <stddef.h>

struct sg_arena_chunk;

struct sg_arena {
    struct sg_arena_chunk *head;
    size_t chunk_size; /* the usual size of a new chunk */
    size_t total;      /* bytes obtained from malloc, for reports */
};

/* <chunk_size> 0 picks a default (64 KiB). Never fails: memory comes later. */
void sg_arena_init(struct sg_arena *a, size_t chunk_size);

/* Returns <size> bytes aligned for any type, or NULL when out of memory. The
 * memory is valid until sg_arena_reset() or sg_arena_free(). */
void *sg_arena_alloc(struct sg_arena *a, size_t size);

/* Copies <len> bytes of <s> and a NUL; returns NULL when out of memory. */
char *sg_arena_strndup(struct sg_arena *a, const char *s, size_t len);

/* Frees all but the first chunk and makes it empty again. */
void sg_arena_reset(struct sg_arena *a);

/* Frees every chunk. */
void sg_arena_free(struct sg_arena *a);

#endif
