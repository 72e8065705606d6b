// The two physical bounds bench/scale.sh puts next to its numbers, measured on this machine:
//   read GB/s  - THREADS threads summing disjoint halves of a 1 GiB buffer (DRAM, not cache), best of 5;
//                the buffer on transparent huge pages where the kernel allows (MADV_HUGEPAGE), as the
//                node's weights are since session 20 (SystemMemory): with 4 KiB pages this VM's TLB
//                misses, not DRAM, bounded the reads;
//   sgemm GFLOP/s - THREADS threads, each a single-threaded cblas_sgemm (M=512, N=512, K=2048, the
//                   engine's BLAS path: one tile per member), best of 5.
// Prints one JSON object. Built by scale.sh: cc -O2 -mavx2 roofline.c $(pkg-config --cflags --libs openblas) -lpthread
#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

enum { BYTES = 1 << 30, M = 512, N = 512, K = 2048 };
static float *buffer;
static int threads;

static void *sum_part(void *arg) {
    const long i = (long)arg, per = BYTES / 4 / threads;
    const float *p = buffer + i * per;
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (long j = 0; j < per; j += 16) { a = _mm256_add_ps(a, _mm256_loadu_ps(p + j)); b = _mm256_add_ps(b, _mm256_loadu_ps(p + j + 8)); }
    float out[8]; _mm256_storeu_ps(out, _mm256_add_ps(a, b));
    static volatile float sink; sink = out[0];
    return NULL;
}

struct gemm { float *a, *b, *c; };
static void *gemm_part(void *arg) {
    struct gemm *g = arg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, g->a, K, g->b, K, 0, g->c, N);
    return NULL;
}

int main(int argc, char **argv) {
    threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || threads > 64) return 2;
    openblas_set_num_threads(1);
    buffer = aligned_alloc(2 << 20, BYTES);
    if (!buffer) return 3;
    madvise(buffer, BYTES, MADV_HUGEPAGE);  // advice: 4 KiB pages where the kernel declines
    memset(buffer, 1, BYTES);
    pthread_t t[64];
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, sum_part, (void *)i);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        if (now() - t0 < best) best = now() - t0;
    }
    const double gbs = BYTES / best / 1e9;
    free(buffer);
    struct gemm g[64];
    for (int i = 0; i < threads; i++) {
        g[i].a = malloc(4L * M * K); g[i].b = malloc(4L * N * K); g[i].c = malloc(4L * M * N);
        for (long j = 0; j < (long)M * K; j++) g[i].a[j] = (j % 7) * 0.1f;
        for (long j = 0; j < (long)N * K; j++) g[i].b[j] = (j % 5) * 0.1f;
    }
    best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, gemm_part, &g[i]);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        if (now() - t0 < best) best = now() - t0;
    }
    const double gflops = 2.0 * M * N * K * threads / best / 1e9;
    printf("{\"threads\": %d, \"readGBps\": %.2f, \"sgemmGFLOPS\": %.1f, \"openblasCore\": \"%s\"}\n",
           threads, gbs, gflops, openblas_get_corename());
    return 0;
}
