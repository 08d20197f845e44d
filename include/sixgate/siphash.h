/* SipHash-2-4 (Aumasson and Bernstein): a keyed hash, so that names chosen by
 * customers or by clients cannot be crafted to collide in the route table. */
#ifndef SIXGATE_SIPHASH_H
#define SIXGATE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t sg_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
