/*
 * QEMU TCG plugin for edgeport's qemu-pi4/qemu-pi5 devices: counts executed guest instructions and records
 * the running count at every marker syscall, lseek(-1, MARK, 0), that device_runner.py --insn-markers issues
 * around each timed inference. At exit it writes "total N" and one "mark N" line per marker to out=PATH.
 * The marker is aarch64's lseek (62) by default; syscall=N names the guest's lseek elsewhere (x86_64: 8, for the
 * qemu-x86-avx2 device).
 *
 * Counting is an inline add of each translation block's instruction count when the block is entered (no
 * helper call per instruction, so it stays cheap). The counter is shared by all vCPUs without atomics:
 * exact for a single guest thread (edgeport counts with --threads 1).
 *
 * Written for edgeport against the plugin API (include/qemu/qemu-plugin.h) of the installed qemu-user;
 * edgeport builds it with gcc + glib when it first needs it.
 *   -plugin libinsn_counter.so,out=/path/counts.txt[,syscall=8]
 */
#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define AARCH64_SYS_LSEEK 62
#define EDGEPORT_MARK 0x6564676570ULL /* must match INSN_MARK in device_runner.py */

static int64_t mark_syscall = AARCH64_SYS_LSEEK;
static uint64_t insn_count;
static GArray *marks;
static char *out_path;

static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == mark_syscall && (int32_t)a1 == -1 && a2 == EDGEPORT_MARK) {
        uint64_t now = insn_count;
        g_array_append_val(marks, now);
    }
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    FILE *fh = fopen(out_path, "w");
    if (!fh) {
        qemu_plugin_outs("insn_counter: cannot write the out= file\n");
        return;
    }
    fprintf(fh, "total %" PRIu64 "\n", insn_count);
    for (guint i = 0; i < marks->len; i++) {
        fprintf(fh, "mark %" PRIu64 "\n", g_array_index(marks, uint64_t, i));
    }
    fclose(fh);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (g_str_has_prefix(argv[i], "out=")) {
            out_path = g_strdup(argv[i] + 4);
        } else if (g_str_has_prefix(argv[i], "syscall=")) {
            mark_syscall = g_ascii_strtoll(argv[i] + 8, NULL, 10);
        }
    }
    if (!out_path) {
        fprintf(stderr, "insn_counter: needs out=PATH\n");
        return -1;
    }
    marks = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
