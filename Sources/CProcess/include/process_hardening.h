#ifndef SECURENODE_PROCESS_HARDENING_H
#define SECURENODE_PROCESS_HARDENING_H

/// prctl(PR_SET_DUMPABLE, 0): no core dump of this process, and /proc/<pid>/mem and ptrace closed
/// to other processes of the same user. Returns 0, or -1 with errno. (prctl is variadic, which
/// Swift cannot call.)
int securenode_set_nondumpable(void);

#endif
