#include "sixgate/sniff.h"

const char *sg_sniff_result_str(enum sg_sniff_result r)
{
    switch (r) {
    case SG_SNIFF_NEED_MORE:
        return "need_more";
    case SG_SNIFF_FOUND:
        return "found";
    case SG_SNIFF_NO_NAME:
        return "no_name";
    case SG_SNIFF_BAD_NAME:
        return "bad_name";
    case SG_SNIFF_MALFORMED:
        return "malformed";
    case SG_SNIFF_TOO_LARGE:
        return "too_large";
    case SG_SNIFF_WRONG_PROTOCOL:
        return "wrong_protocol";
    }
    return "unknown";
}
