/* Fuzzes the PROXY protocol decoder (input from an upstream load balancer).
 * Invariants: a header never claims more bytes than it was given, every
 * prefix of a decoded header is incomplete, and a decoded header encodes
 * back to one that decodes to the same addresses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sixgate/proxy_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_proxy_info info;
    enum sg_proxy_parse r = sg_proxy_header_decode(data, size, &info);
    if (r != SG_PROXY_HDR_OK)
        return 0;
    if (info.header_len == 0 || info.header_len > size)
        abort();
    struct sg_proxy_info again;
    if (sg_proxy_header_decode(data, info.header_len - 1, &again) == SG_PROXY_HDR_OK)
        abort();
    if (!info.has_addresses)
        return 0;
    for (int v = 1; v <= 2; v++) {
        uint8_t buf[SG_PROXY_HEADER_MAX];
        size_t n = sg_proxy_header_encode(v, &info.src.sa, &info.dst.sa, "x", 1, buf, sizeof(buf));
        if (n == 0 || sg_proxy_header_decode(buf, n, &again) != SG_PROXY_HDR_OK)
            abort();
        if (info.src.sa.sa_family == info.dst.sa.sa_family &&
            (!sg_sockaddr_equal(&again.src.sa, &info.src.sa) ||
             !sg_sockaddr_equal(&again.dst.sa, &info.dst.sa)))
            abort();
    }
    return 0;
}
