// Q4_K and Q6_K prompt products on Llama-3.2-1B's shapes, one thread (bench/kernels/kquant_groups.sh):
// the sixteen-row groups of the tolerance path (kquant_groups.c: repack + integer GEMM, the
// repacking timed with it) against the exact GEMM (`sn_kquant_gemm_vnni`) and against dequantize +
// OpenBLAS sgemm, median of N alternating runs; prints the groups' largest difference from the
// exact GEMM relative to the largest output.
#include "kquant_bench.h"
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

int main(int argc, char **argv) {
    const int runs = argc > 1 && atoi(argv[1]) > 0 ? (atoi(argv[1]) < 32 ? atoi(argv[1]) : 32) : 5;
    openblas_set_num_threads(1);
    const struct { const char *name; int type, rows, columns; } shapes[] = {
        {"attn_q Q4_K 2048x2048", SN_Q4_K, 2048, 2048}, {"ffn_up Q4_K 8192x2048", SN_Q4_K, 8192, 2048},
        {"ffn_down Q4_K 2048x8192", SN_Q4_K, 2048, 8192}, {"attn_v Q6_K 512x2048", SN_Q6_K, 512, 2048},
        {"ffn_down Q6_K 2048x8192", SN_Q6_K, 2048, 8192}};
    const int token_counts[] = {16, 64, 128, 320};
    printf("| product | tokens | exact GEMM GMAC/s | groups GMAC/s | dequantize + sgemm GMAC/s | groups / exact | groups / sgemm | max difference / max output |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int type = shapes[s].type, rows = shapes[s].rows, cols = shapes[s].columns, nb = cols / 256;
        size_t row_bytes;
        uint8_t *w = kquant_random_matrix(type, rows, cols, &row_bytes);
        float *wf = malloc(sizeof(float) * (size_t)rows * cols);
        uint8_t *group = malloc(sn_kquant_group_bytes(type, nb));
        for (size_t tc = 0; tc < sizeof token_counts / sizeof token_counts[0]; tc++) {
            const int tokens = token_counts[tc];
            float *x = malloc(sizeof(float) * (size_t)cols * tokens);
            for (size_t i = 0; i < (size_t)cols * tokens; i++) x[i] = ((int)(next() % 2001) - 1000) * 1e-3f;
            const size_t as = (size_t)nb * 292;
            uint8_t *a = malloc(as * tokens), *u = malloc(as * tokens);
            float *sums = malloc(sizeof(float) * (size_t)nb * 8 * tokens);
            for (int t = 0; t < tokens; t++) {
                sn_quantize_q8_K(x + (size_t)t * cols, nb, a + t * as);
                sn_q4k_activation_sums(a + t * as, nb, sums + (size_t)t * nb * 8);
                sn_q6k_activations(a + t * as, nb, u + t * as);
            }
            float *o1 = malloc(sizeof(float) * (size_t)rows * tokens), *o2 = malloc(sizeof(float) * (size_t)rows * tokens);
            float *o3 = malloc(sizeof(float) * (size_t)rows * tokens);
            sn_matmul_job job = {type, w, row_bytes, rows, cols / 32, o1, rows};
            double te[32], tg[32], tb[32];
            for (int i = 0; i < runs; i++) {
                const double t0 = now();
                sn_kquant_gemm_vnni(&job, 0, rows, a, as, tokens);
                const double t1 = now();
                for (int g = 0; g < rows; g += 16) {
                    const int n = rows - g < 16 ? rows - g : 16;
                    sn_kquant_repack_group(type, w + g * row_bytes, row_bytes, n, nb, group);
                    sn_kquant_group_gemm(type, group, nb, n, type == SN_Q6_K ? u : a, as, sums, (size_t)nb * 8, tokens, o2 + g, rows);
                }
                const double t2 = now();
                for (int r = 0; r < rows; r++) sn_dequantize_kquant(type, w + r * row_bytes, nb, wf + (size_t)r * cols);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, rows, cols, 1, x, cols, wf, cols, 0, o3, rows);
                const double t3 = now();
                te[i] = t1 - t0; tg[i] = t2 - t1; tb[i] = t3 - t2;
            }
            double diff = 0, top = 0;
            for (size_t i = 0; i < (size_t)rows * tokens; i++) {
                if (fabs(o1[i] - o2[i]) > diff) diff = fabs(o1[i] - o2[i]);
                if (fabs(o1[i]) > top) top = fabs(o1[i]);
            }
            qsort(te, runs, sizeof(double), cmp); qsort(tg, runs, sizeof(double), cmp); qsort(tb, runs, sizeof(double), cmp);
            const double macs = (double)rows * cols * tokens * 1e-9;
            const double e = macs / te[runs / 2], g = macs / tg[runs / 2], b = macs / tb[runs / 2];
            printf("| %s | %d | %.1f | %.1f | %.1f | %.2fx | %.2fx | %.1e |\n", shapes[s].name, tokens, e, g, b, g / e, g / b, diff / top);
            fflush(stdout);
            free(x); free(a); free(u); free(sums); free(o1); free(o2); free(o3);
        }
        free(w); free(wf); free(group);
    }
    return 0;
}
