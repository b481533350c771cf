/* A qemu TCG plugin that counts the guest instructions a program executes and prints the total to stderr at exit
 * ("guest_insns N"). Used by scripts/arm-insn-count.sh to compare the aarch64 kernels without ARM hardware.
 *
 * It declares the few plugin-API functions it calls itself (qemu's API, version 1, as in qemu 7.2: the plugin
 * exports qemu_plugin_version and qemu_plugin_install; see docs/devel/tcg-plugins.rst in qemu's source) because
 * Debian ships qemu-user without the plugin header. It prints the total and the main thread's count: other threads
 * (a pool spinning while it waits) execute instructions in proportion to wall time, not to work. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, struct qemu_plugin_tb *));
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, void (*)(unsigned int, void *),
                                                 enum qemu_plugin_cb_flags, void *);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, void (*)(qemu_plugin_id_t, void *), void *);
/* One count per guest thread (linux-user runs each as a vCPU, numbered in creation order: the main thread is 0),
 * each written only by its own thread. */
#define MAX_VCPUS 256
static uint64_t count[MAX_VCPUS];
static void exec(unsigned int vcpu, void *n) {
    if (vcpu < MAX_VCPUS) count[vcpu] += (uintptr_t)n;
}
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_cb(tb, exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}
static void done(qemu_plugin_id_t id, void *p) {
    uint64_t total = 0;
    for (int i = 0; i < MAX_VCPUS; i++) total += count[i];
    fprintf(stderr, "guest_insns %llu main_thread %llu\n", (unsigned long long)total, (unsigned long long)count[0]);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info,
                                                               int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
    qemu_plugin_register_atexit_cb(id, done, NULL);
    return 0;
}
