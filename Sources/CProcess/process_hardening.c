#include "process_hardening.h"
#include <sys/prctl.h>

int securenode_set_nondumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
