// Which 512-bit operations share the execution ports of `vpdpbusd` on this core (bench/README.md, issue 19,
// "Q4_K with two rows per register"): eight independent `vpdpbusd` per iteration, alone and with four
// more independent operations of one kind; an operation that takes the same ports adds about its
// count in cycles, one that does not adds nothing. Cycles assume the clock printed first (a chain of
// dependent adds).
//
//   clang -O2 -mavx512f -mavx512bw -mavx512vnni bench/kernels/ports.c -o /tmp/ports && /tmp/ports
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double clock_ghz(void) {
    const long n = 500000000;
    long x = 0;
    const double t0 = now();
    for (long i = 0; i < n; i++) __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    return 4.0 * n / (now() - t0) / 1e9;
}

__attribute__((noinline)) static void run(long n, int kind, float *out) {
    __m512i a0 = _mm512_set1_epi32(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m512i x = _mm512_set1_epi32(0x01020304), y = _mm512_set1_epi32(0x01010101), idx = _mm512_set1_epi32(3);
    __m512 f0 = _mm512_set1_ps(1), f1 = f0, f2 = f0, f3 = f0;
    const __m512 m = _mm512_set1_ps(1.0000001f);
    for (long i = 0; i < n; i++) {
        a0 = _mm512_dpbusd_epi32(a0, x, y); a1 = _mm512_dpbusd_epi32(a1, x, y);
        a2 = _mm512_dpbusd_epi32(a2, x, y); a3 = _mm512_dpbusd_epi32(a3, x, y);
        a4 = _mm512_dpbusd_epi32(a4, x, y); a5 = _mm512_dpbusd_epi32(a5, x, y);
        a6 = _mm512_dpbusd_epi32(a6, x, y); a7 = _mm512_dpbusd_epi32(a7, x, y);
        switch (kind) {
        case 1: f0 = _mm512_mul_ps(f0, m); f1 = _mm512_mul_ps(f1, m); f2 = _mm512_mul_ps(f2, m); f3 = _mm512_mul_ps(f3, m); break;
        case 2: f0 = _mm512_fmadd_ps(f0, m, m); f1 = _mm512_fmadd_ps(f1, m, m); f2 = _mm512_fmadd_ps(f2, m, m); f3 = _mm512_fmadd_ps(f3, m, m); break;
        case 3: f0 = _mm512_permutexvar_ps(idx, f0); f1 = _mm512_permutexvar_ps(idx, f1); f2 = _mm512_permutexvar_ps(idx, f2); f3 = _mm512_permutexvar_ps(idx, f3); break;
        case 4:
            f0 = _mm512_cvtepi32_ps(_mm512_castps_si512(f0)); f1 = _mm512_cvtepi32_ps(_mm512_castps_si512(f1));
            f2 = _mm512_cvtepi32_ps(_mm512_castps_si512(f2)); f3 = _mm512_cvtepi32_ps(_mm512_castps_si512(f3));
            break;
        case 5: a0 = _mm512_slli_epi32(a0, 0); a1 = _mm512_slli_epi32(a1, 0); a2 = _mm512_slli_epi32(a2, 0); a3 = _mm512_slli_epi32(a3, 0); break;
        case 6:
            a0 = _mm512_mask_blend_epi16(0xAAAAAAAA, a0, x); a1 = _mm512_mask_blend_epi16(0xAAAAAAAA, a1, x);
            a2 = _mm512_mask_blend_epi16(0xAAAAAAAA, a2, x); a3 = _mm512_mask_blend_epi16(0xAAAAAAAA, a3, x);
            break;
        case 7: a0 = _mm512_dpwssd_epi32(a0, x, y); a1 = _mm512_dpwssd_epi32(a1, x, y); a2 = _mm512_dpwssd_epi32(a2, x, y); a3 = _mm512_dpwssd_epi32(a3, x, y); break;
        default: break;
        }
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                         "+v"(f0), "+v"(f1), "+v"(f2), "+v"(f3));
    }
    __m512 r = _mm512_add_ps(_mm512_add_ps(f0, f1), _mm512_add_ps(f2, f3));
    r = _mm512_add_ps(r, _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_add_epi32(a0, a7), _mm512_add_epi32(a3, a5))));
    _mm512_storeu_ps(out, r);
}

int main(void) {
    const double ghz = clock_ghz();
    printf("clock: %.2f GHz\n", ghz);
    const char *names[] = {"8 vpdpbusd", "+ 4 vmulps", "+ 4 vfmadd", "+ 4 vpermps", "+ 4 vcvtdq2ps", "+ 4 vpslld",
                           "+ 4 vpblendmw", "+ 4 vpdpwssd"};
    float out[16];
    for (int k = 0; k < 8; k++) {
        const long n = 50000000;
        const double t0 = now();
        run(n, k, out);
        printf("%-14s %.2f cycles per iteration\n", names[k], (now() - t0) / n * ghz * 1e9);
    }
    return out[0] == 12345.f;
}
