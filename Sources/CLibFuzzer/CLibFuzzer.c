// Declarations only (include/CLibFuzzer.h); SwiftPM wants one source file per C target.
#include "CLibFuzzer.h"
