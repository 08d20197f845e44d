/* Builds one JSON object in a fixed buffer, for access-log lines. Strings are
 * escaped so that a name from the wire can never break the line or the
 * object: quotes, backslashes, control bytes and every byte over 0x7f
 * become escapes. A line that would overflow is cut at a field boundary and
 * still closed properly. */
#ifndef SIXGATE_JSON_H
#define SIXGATE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_json {
    char *buf;
    size_t cap;
    size_t len;
    bool first;
    bool truncated;
};

/* Starts an object ("{") in <buf> of <cap> bytes (at least 64). */
void sg_json_begin(struct sg_json *j, char *buf, size_t cap);
/* A string field; <len> bytes of <s> (may hold any byte). NULL gives null. */
void sg_json_str(struct sg_json *j, const char *key, const char *s, size_t len);
void sg_json_cstr(struct sg_json *j, const char *key, const char *s);
void sg_json_u64(struct sg_json *j, const char *key, uint64_t v);
/* Milliseconds with three decimals, from nanoseconds. */
void sg_json_ms(struct sg_json *j, const char *key, uint64_t ns);
/* Closes the object and adds "\n"; returns the line's length. */
size_t sg_json_end(struct sg_json *j);


#endif
