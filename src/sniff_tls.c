#include "sixgate/sniff_tls.h"
