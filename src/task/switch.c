/* The context switch: save the callee-saved registers on the current stack, store the stack
 * pointer, load the other one, pop its registers, return into it.
 *
 * Why this is enough: sl__cpu_switch is an ordinary function call to the compiler, so every
 * caller-saved register is already dead (spilled by the caller) at the call; only the
 * callee-saved ones of the ABI must survive — x86-64 SysV: rbx, rbp, r12–r15 (6 pushes);
 * AAPCS64: x19–x29, x30 (the return address) and the low halves of v8–v15. The FP control
 * words (MXCSR, x87 CW, FPCR) are not switched: tasks must not change them (docs/tasks.md).
 * No system call, no signal-mask save (ucontext's swapcontext makes one per switch — it is
 * only the fallback for other architectures).
 *
 * A new context is a hand-made frame that looks as if sl__cpu_switch had saved it: the
 * registers hold entry and arg, the return address is a three-instruction trampoline that
 * calls entry(arg). entry never returns (a finished task switches away for good); the
 * trampoline traps if it ever did. */
#include <stdint.h>
#include <string.h>

#include "task/task_int.h"

#if defined(__x86_64__)

void sl__ctx_start(void);

__asm__(".text\n"
        ".globl sl__ctx_swap\n"
        ".hidden sl__ctx_swap\n"
        ".type sl__ctx_swap,@function\n"
        ".p2align 4\n"
        "sl__ctx_swap:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size sl__ctx_swap,.-sl__ctx_swap\n"
        ".globl sl__ctx_start\n"
        ".hidden sl__ctx_start\n"
        ".type sl__ctx_start,@function\n"
        ".p2align 4\n"
        "sl__ctx_start:\n"
        "    movq %r13, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n"
        ".size sl__ctx_start,.-sl__ctx_start\n");

void sl__cpu_make(sl__cpu *c, char *lo, char *hi, void (*entry)(void *), void *arg)
{
    (void)lo;
    /* After the 6 pops and the ret, rsp = sp + 56 must be 16-byte aligned for the call in
     * sl__ctx_start (the ABI wants rsp % 16 == 0 at a call instruction). */
    uintptr_t top = (uintptr_t)hi & ~(uintptr_t)15;
    void **sp = (void **)(top - 72);
    sp[0] = 0;                     /* r15 */
    sp[1] = 0;                     /* r14 */
    sp[2] = arg;                   /* r13 */
    sp[3] = (void *)entry;         /* r12 */
    sp[4] = 0;                     /* rbx */
    sp[5] = 0;                     /* rbp: ends the frame chain for unwinders */
    sp[6] = (void *)sl__ctx_start; /* return address */
    sp[7] = 0;
    sp[8] = 0;
    c->sp = sp;
}

#elif defined(__aarch64__)

void sl__ctx_start(void);

__asm__(".text\n"
        ".globl sl__ctx_swap\n"
        ".hidden sl__ctx_swap\n"
        ".type sl__ctx_swap,%function\n"
        ".p2align 4\n"
        "sl__ctx_swap:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mov x2, sp\n"
        "    str x2, [x0]\n"
        "    mov sp, x1\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #176\n"
        "    ret\n"
        ".size sl__ctx_swap,.-sl__ctx_swap\n"
        ".globl sl__ctx_start\n"
        ".hidden sl__ctx_start\n"
        ".type sl__ctx_start,%function\n"
        ".p2align 4\n"
        "sl__ctx_start:\n"
        "    mov x0, x20\n"
        "    blr x19\n"
        "    brk #0\n"
        ".size sl__ctx_start,.-sl__ctx_start\n");

void sl__cpu_make(sl__cpu *c, char *lo, char *hi, void (*entry)(void *), void *arg)
{
    (void)lo;
    uintptr_t top = (uintptr_t)hi & ~(uintptr_t)15;
    void **sp = (void **)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (void *)entry;          /* x19 */
    sp[1] = arg;                    /* x20 */
    sp[10] = 0;                     /* x29: ends the frame chain */
    sp[11] = (void *)sl__ctx_start; /* x30 */
    c->sp = sp;
}

#else /* ucontext fallback */

static void uc_entry(unsigned hi_fn, unsigned lo_fn, unsigned hi_arg, unsigned lo_arg)
{
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)hi_fn << 16 << 16) | (uintptr_t)lo_fn);
    void *arg = (void *)(((uintptr_t)hi_arg << 16 << 16) | (uintptr_t)lo_arg);
    entry(arg);
}

void sl__cpu_make(sl__cpu *c, char *lo, char *hi, void (*entry)(void *), void *arg)
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = (size_t)(hi - lo);
    c->uc.uc_link = NULL;
    uintptr_t f = (uintptr_t)entry, a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)(void))uc_entry, 4, (unsigned)(f >> 16 >> 16), (unsigned)f,
                (unsigned)(a >> 16 >> 16), (unsigned)a);
}

void sl__cpu_switch(sl__cpu *from, sl__cpu *to)
{
    swapcontext(&from->uc, &to->uc);
}

#endif
