#include "sixgate/sniff_http.h"
