/*
 * insn_count.c - instruction-counting TCG plugin for qemu-user 7.2 (plugin API v1).
 * Debian ships no qemu-plugin.h, so the few declarations needed are written out here
 * (they match include/qemu/qemu-plugin.h of QEMU 7.2, QEMU_PLUGIN_VERSION 1).
 *
 * Build:  gcc -shared -fPIC -O2 -o libinsn.so insn_count.c
 * Use:    qemu-aarch64 -plugin ./libinsn.so,out=/tmp/count.txt[,mode=vcpu][,marker_fd=-7771][,marker_nr=62] ...
 *
 * Counts every executed guest instruction. mode=inline (default): an inline add per
 * translated block into one shared counter (lowest overhead; exact only with one guest
 * thread). mode=vcpu: a callback per executed block adds to the running thread's own
 * counter, and markers report the calling thread's count, so idle or busy helper threads
 * (onnxruntime starts one) cannot disturb it.  Output file lines:
 *   marker <tag> <count>   whenever the guest does syscall marker_nr (default 62 = lseek on
 *                          aarch64) with first argument == marker_fd (default -7771);
 *                          tag = second argument.  Guest side (python):
 *                              try: os.lseek(-7771, tag, 0)
 *                              except OSError: pass          # EBADF, no side effect
 *   total <count>          at exit (all threads)
 *   vcpus <n>              number of guest threads seen (mode=inline is exact only when n == 1:
 *                          the inline add is not atomic across threads)
 *   mode <inline|vcpu>
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index,
        int64_t num, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
        uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
/* provided by the qemu binary */
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

#define MAX_VCPUS 256
static uint64_t insn_count;               /* mode=inline: one shared counter (exact with one thread) */
static uint64_t vcpu_count[MAX_VCPUS];    /* mode=vcpu: one counter per guest thread, each written
                                           * only by its own thread, so no race */
static uint64_t overflow_count;
static bool per_vcpu;
static unsigned int n_vcpus;
static FILE *out;
static int64_t marker_fd = -7771;
static int64_t marker_nr = 62;

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    if (vcpu_index < MAX_VCPUS)
        vcpu_count[vcpu_index] += (uint64_t)(uintptr_t)udata;
    else
        __atomic_add_fetch(&overflow_count, (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (per_vcpu)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    else
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count, n);
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    __atomic_add_fetch(&n_vcpus, 1, __ATOMIC_SEQ_CST);
}

static uint64_t total(void)
{
    uint64_t t = insn_count + overflow_count;
    for (int i = 0; i < MAX_VCPUS; i++)
        t += vcpu_count[i];
    return t;
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                       uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                       uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == marker_nr && (int64_t)a1 == marker_fd) {
        /* TBs are exited before a syscall, so the count is exact here. In vcpu mode it is the
         * count of the thread that made the marker call: other threads do not disturb it. */
        uint64_t c = per_vcpu ? (vcpu_index < MAX_VCPUS ? vcpu_count[vcpu_index] : 0) : insn_count;
        fprintf(out, "marker %" PRId64 " %" PRIu64 "\n", (int64_t)a2, c);
        fflush(out);
    }
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    fprintf(out, "total %" PRIu64 "\nvcpus %u\nmode %s\n", total(), n_vcpus, per_vcpu ? "vcpu" : "inline");
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "arg=", 4) == 0) a += 4;       /* accept old "arg=k=v" style too */
        if (strncmp(a, "out=", 4) == 0) path = a + 4;
        else if (strncmp(a, "marker_fd=", 10) == 0) marker_fd = strtoll(a + 10, NULL, 0);
        else if (strncmp(a, "marker_nr=", 10) == 0) marker_nr = strtoll(a + 10, NULL, 0);
        else if (strcmp(a, "mode=vcpu") == 0) per_vcpu = true;
        else if (strcmp(a, "mode=inline") == 0) per_vcpu = false;
        else { fprintf(stderr, "insn_count: unknown argument '%s'\n", argv[i]); return -1; }
    }
    out = path ? fopen(path, "w") : fdopen(dup(2), "w");
    if (!out) { perror(path); return -1; }
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
