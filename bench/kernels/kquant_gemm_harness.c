// Q4_K/Q6_K prompt products on Llama-3.2-1B's shapes, one thread (bench/kernels/kquant_gemm.sh):
// checks that `sn_kquant_gemm_vnni` equals `sn_kquant_rows` bit for bit, then times, median of N,
// the row kernel, the GEMM, and what the BLAS prompt path does for the same product (dequantize
// the rows to F32 with `sn_dequantize_kquant`, then single-threaded OpenBLAS `cblas_sgemm`).
#include "kquant_bench.h"
#include <cblas.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 5;
    openblas_set_num_threads(1);
    // name, type, rows, columns (1B: Q/K/V and O 2048 wide, gate/up 2048 -> 8192, down 8192 -> 2048)
    const struct { const char *name; int type, rows, columns; } shapes[] = {
        {"attn_q Q4_K 2048x2048", SN_Q4_K, 2048, 2048},
        {"ffn_up Q4_K 8192x2048", SN_Q4_K, 8192, 2048},
        {"ffn_down Q6_K 2048x8192", SN_Q6_K, 2048, 8192},
        {"ffn_down Q4_K 2048x8192", SN_Q4_K, 2048, 8192},
    };
    const int token_counts[] = {4, 8, 16, 64, 512};
    int failures = 0;
    printf("| product | tokens | row kernel GMAC/s | GEMM GMAC/s | dequantize + sgemm GMAC/s | GEMM / row kernel | GEMM / BLAS | bits |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int type = shapes[s].type, rows = shapes[s].rows, cols = shapes[s].columns, nb = cols / 256;
        size_t row_bytes;
        uint8_t *w = kquant_random_matrix(type, rows, cols, &row_bytes);
        float *wf = malloc(sizeof(float) * (size_t)rows * cols);
        for (size_t tc = 0; tc < sizeof token_counts / sizeof token_counts[0]; tc++) {
            const int tokens = token_counts[tc];
            float *x = malloc(sizeof(float) * (size_t)cols * tokens);
            for (size_t i = 0; i < (size_t)cols * tokens; i++) x[i] = ((int)(next() % 2001) - 1000) * 1e-3f;
            const size_t as = nb * 292;
            uint8_t *a = malloc(as * tokens);
            for (int t = 0; t < tokens; t++) sn_quantize_q8_K(x + (size_t)t * cols, nb, a + t * as);
            float *o1 = malloc(sizeof(float) * (size_t)rows * tokens), *o2 = malloc(sizeof(float) * (size_t)rows * tokens);
            sn_matmul_job job = {type, w, row_bytes, rows, cols / 32, o1, rows};
            sn_kquant_rows(&job, 0, rows, a, as, tokens);
            job.out = o2;
            sn_kquant_gemm_vnni(&job, 0, rows, a, as, tokens);
            const int same = memcmp(o1, o2, sizeof(float) * (size_t)rows * tokens) == 0;
            failures += !same;
            double tr[32], tg[32], tb[32];
            for (int i = 0; i < runs && i < 32; i++) {
                double t0 = now();
                job.out = o1;
                sn_kquant_rows(&job, 0, rows, a, as, tokens);
                double t1 = now();
                sn_kquant_gemm_vnni(&job, 0, rows, a, as, tokens);
                double t2 = now();
                for (int r = 0; r < rows; r++) sn_dequantize_kquant(type, w + r * row_bytes, nb, wf + (size_t)r * cols);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, rows, cols, 1, x, cols, wf, cols, 0, o2, rows);
                double t3 = now();
                tr[i] = t1 - t0; tg[i] = t2 - t1; tb[i] = t3 - t2;
            }
            const int n = runs < 32 ? runs : 32;
            qsort(tr, n, sizeof(double), cmp); qsort(tg, n, sizeof(double), cmp); qsort(tb, n, sizeof(double), cmp);
            const double macs = (double)rows * cols * tokens * 1e-9;
            const double r = macs / tr[n / 2], g = macs / tg[n / 2], b = macs / tb[n / 2];
            printf("| %s | %d | %.1f | %.1f | %.1f | %.2fx | %.2fx | %s |\n", shapes[s].name, tokens, r, g, b, g / r, g / b,
                   same ? "identical" : "DIFFERENT");
            fflush(stdout);
            free(x); free(a); free(o1); free(o2);
        }
        free(w); free(wf);
    }
    return failures != 0;
}
