// A fixed team of threads for the transformer's data-parallel operations (see sn_kernels.h).
//
// One job at a time: the caller publishes (fn, ctx) and `size - 1` seats, bumps `generation`, runs
// member 0 itself, then closes the job (no seat left) and waits only for the members that took a
// seat. Every job takes its work from a shared counter, so once the caller's own fn has returned all
// the work is taken: a member that was descheduled (another process, or the node's own HTTP threads,
// wanted the core) or still asleep is not waited for, and joins a later job instead. Members spin
// on `generation` for a bounded time after each job (decode runs hundreds of jobs per token,
// microseconds apart: a futex wake-up per job would cost more than the work), then sleep on a
// condition variable so that an idle node takes no CPU.
#include "sn_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define SN_PAUSE() _mm_pause()
#else
#define SN_PAUSE() ((void)0)
#endif

/// How long an idle member spins before it sleeps.
#define SN_SPIN_NANOSECONDS 200000LL

struct sn_pool {
    int size;
    pthread_t *threads;
    struct member { sn_pool *pool; int index; } *members;
    _Atomic unsigned generation;
    /// Seats still open in the current job (bits 16 and up) and members inside it (bits 0-15).
    _Atomic unsigned seats;
    _Atomic int stopping;
    _Atomic int sleepers;
    void (*fn)(void *, int, int);
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *member_main(void *arg) {
    struct member *m = arg;
    sn_pool *pool = m->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g == seen && !atomic_load(&pool->stopping)) {
            const long long deadline = now_ns() + SN_SPIN_NANOSECONDS;
            int spins = 0;
            while ((g = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
                   !atomic_load_explicit(&pool->stopping, memory_order_relaxed)) {
                SN_PAUSE();
                if (++spins % 256 == 0 && now_ns() > deadline) break;
            }
            if (g == seen) {
                pthread_mutex_lock(&pool->mutex);
                atomic_fetch_add(&pool->sleepers, 1);
                while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping))
                    pthread_cond_wait(&pool->wake, &pool->mutex);
                atomic_fetch_sub(&pool->sleepers, 1);
                pthread_mutex_unlock(&pool->mutex);
            }
        }
        if (atomic_load(&pool->stopping)) return NULL;
        seen = g;
        // Take a seat if the job (this one, or a later one if this member was away) still has one;
        // fn and ctx are read only then (they were written before the seats were opened).
        unsigned s = atomic_load(&pool->seats);
        while (s >> 16) {
            if (atomic_compare_exchange_weak(&pool->seats, &s, s - (1u << 16) + 1)) {
                pool->fn(pool->ctx, m->index, pool->size);
                atomic_fetch_sub(&pool->seats, 1);
                break;
            }
        }
    }
}

sn_pool *sn_pool_create(int threads) {
    if (threads < 1) threads = 1;
    sn_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->size = threads;
    pool->threads = calloc((size_t)threads, sizeof *pool->threads);
    pool->members = calloc((size_t)threads, sizeof *pool->members);
    if (!pool->threads || !pool->members) {
        free(pool->threads); free(pool->members); free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (int i = 1; i < threads; i++) {
        pool->members[i] = (struct member){pool, i};
        if (pthread_create(&pool->threads[i], NULL, member_main, &pool->members[i]) != 0) {
            pool->size = i;  // join the ones that started
            sn_pool_destroy(pool);
            return NULL;
        }
    }
    return pool;
}

void sn_pool_destroy(sn_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stopping, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->size; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool->members);
    free(pool);
}

int sn_pool_size(const sn_pool *pool) { return pool ? pool->size : 1; }

/// Every caller's fn takes its work from a shared counter (for_member, matmul_member,
/// attention_member), so "every member" of sn_kernels.h's contract is met as "every member that
/// joined before the caller's own fn returned": the others had nothing left to do.
void sn_pool_run(sn_pool *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    if (!pool || pool->size == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    // No member is inside (the last job ended with none) and none can enter a closed job: open it.
    atomic_store(&pool->seats, (unsigned)(pool->size - 1) << 16);
    atomic_fetch_add(&pool->generation, 1);  // seq_cst: ordered before the sleepers check
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    fn(ctx, 0, pool->size);
    // All the work is taken: close the seats, then wait for the members inside. They normally finish
    // within microseconds of the caller; if one was descheduled mid-chunk, yield rather than spin
    // against it.
    unsigned s = atomic_load(&pool->seats);
    while (!atomic_compare_exchange_weak(&pool->seats, &s, s & 0xffffu)) {}
    for (int spins = 0; atomic_load(&pool->seats) != 0; spins++) {
        if (spins < 4096) SN_PAUSE(); else sched_yield();
    }
}

// MARK: - Parallel operations

struct for_ctx {
    void (*fn)(void *, int, int);
    void *ctx;
    int count;
    _Atomic int next;
};

static void for_member(void *arg, int ith, int nth) {
    (void)nth;
    struct for_ctx *c = arg;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->count) return;
        c->fn(c->ctx, i, ith);
    }
}

void sn_pool_for(sn_pool *pool, int count, void (*fn)(void *ctx, int index, int member), void *ctx) {
    struct for_ctx c = {fn, ctx, count, 0};
    if (count <= 1) {
        for_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, for_member, &c);
}

struct matmul_ctx {
    const sn_matmul_job *jobs;
    int count;
    const uint8_t *a;
    size_t a_stride;
    int tokens;
    int total_rows;
    int chunk;
    /// `sn_vnni_activation_tables` of `a`, made once for every member (NULL: none).
    const float *tables;
    _Atomic int next;
};

/// Members take chunks of `chunk` rows (a multiple of 8, so that tiles and Q4_0's packed groups of
/// eight rows stay whole where the jobs' rows are multiples of 8) of the jobs laid end
/// to end, from a shared counter: a member that was descheduled for a while does less, not late.
static void matmul_member(void *arg, int ith, int nth) {
    (void)ith; (void)nth;
    struct matmul_ctx *c = arg;
    for (;;) {
        const long long begin = (long long)atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) * c->chunk;
        if (begin >= c->total_rows) return;
        const long long end = begin + c->chunk < c->total_rows ? begin + c->chunk : c->total_rows;
        long long offset = 0;
        for (int j = 0; j < c->count && offset < end; j++) {
            const sn_matmul_job *job = &c->jobs[j];
            const long long first = begin > offset ? begin - offset : 0;
            const long long last = end - offset < job->rows ? end - offset : job->rows;
            if (first >= last) {
            } else if (c->tables) {
                sn_matmul_rows_vnni_tables(job, (int)first, (int)last, c->a, c->a_stride, c->tokens, c->tables);
            } else {
                sn_matmul_rows(job, (int)first, (int)last, c->a, c->a_stride, c->tokens);
            }
            offset += job->rows;
        }
    }
}

void sn_pool_matmul(sn_pool *pool, const sn_matmul_job *jobs, int count,
                    const uint8_t *a, size_t a_stride, int tokens) {
    struct matmul_ctx c = {jobs, count, a, a_stride, tokens, 0, 0, NULL, 0};
    for (int j = 0; j < count; j++) c.total_rows += jobs[j].rows;
    // Q4_1 with several activations and AVX512-VNNI: the activations' scale tables once here, not
    // once in every chunk of rows a member takes (chunks of 32-56 rows spent about 5% of the
    // products' time making them again, in a perf profile of serve at 16 streams).
    enum { TABLE_TOKENS = 64, TABLE_BLOCKS = 64 };
    float tables[2 * TABLE_TOKENS * TABLE_BLOCKS];
    int q4 = tokens > 1 && tokens <= TABLE_TOKENS && jobs[0].blocks <= TABLE_BLOCKS;
    for (int j = 0; j < count && q4; j++) q4 = jobs[j].type == SN_Q4_1 && jobs[j].blocks == jobs[0].blocks;
    if (q4 && sn_use_vnni()) {
        sn_vnni_activation_tables(SN_Q4_1, a, a_stride, tokens, jobs[0].blocks, tables);
        c.tables = tables;
    }
    // About eight chunks per member, at least 16 rows each, and at most 256: a chunk's weights stay
    // in the core's L2 cache while a kernel passes over them once per eight activations (all but
    // the VNNI Q4_1/Q8_0 kernels, which pass once per 64, see `sn_matmul_rows_vnni_tables`) (the
    // 49152-row output projection made 3072-row chunks, read again from L3 for every eight rows).
    const int members = sn_pool_size(pool);
    int chunk = c.total_rows / (8 * members);
    chunk = chunk < 16 ? 16 : chunk > 256 ? 256 : chunk / 8 * 8;
    c.chunk = chunk;
    // Small products are not worth waking anyone for.
    const long long work = (long long)c.total_rows * (jobs[0].blocks) * tokens;
    if (work < 2048 || members == 1) {
        c.chunk = c.total_rows;
        matmul_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, matmul_member, &c);
}

struct direct_ctx {
    const sn_matmul_job *jobs;
    int count, first_token, tokens, total_rows, chunk;
    const uint8_t *a;
    size_t a_stride, ds_stride;
    const float *ds;
    _Atomic int next;
};

/// `matmul_member` for `sn_pool_q4_1_direct`.
static void direct_member(void *arg, int ith, int nth) {
    (void)ith; (void)nth;
    struct direct_ctx *c = arg;
    for (;;) {
        const long long begin = (long long)atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) * c->chunk;
        if (begin >= c->total_rows) return;
        const long long end = begin + c->chunk < c->total_rows ? begin + c->chunk : c->total_rows;
        long long offset = 0;
        for (int j = 0; j < c->count && offset < end; j++) {
            const sn_matmul_job *job = &c->jobs[j];
            const long long first = begin > offset ? begin - offset : 0;
            const long long last = end - offset < job->rows ? end - offset : job->rows;
            if (first < last)
                sn_q4_1_rows_direct(job->w, job->row_bytes, job->rows, 1, (int)first, (int)(last - first), job->blocks, c->a,
                                    c->a_stride, c->ds, c->ds_stride, c->tokens,
                                    job->out + (size_t)c->first_token * job->out_stride + first, job->out_stride);
            offset += job->rows;
        }
    }
}

void sn_pool_q4_1_direct(sn_pool *pool, const sn_matmul_job *jobs, int count, int first_token, const uint8_t *a,
                         size_t a_stride, const float *ds, size_t ds_stride, int tokens) {
    struct direct_ctx c = {jobs, count, first_token, tokens, 0, 0, a, a_stride, ds_stride, ds, 0};
    for (int j = 0; j < count; j++) c.total_rows += jobs[j].rows;
    // As `sn_pool_matmul`, about eight chunks per member (a member descheduled by another process
    // does less, not late), at most 256 rows, whole eight-row sets, but at least 64 rows: each chunk
    // starts a new stream from memory (`bench/decoding.sh`, SmolLM2, two threads: 16-row minimum
    // 1.01x the one-token decoding, 64 1.10x, 128 1.13x, 256 1.10x; medians of three pairs).
    const int members = sn_pool_size(pool);
    int chunk = c.total_rows / (8 * members);
    c.chunk = chunk < 64 ? 64 : chunk > 256 ? 256 : chunk / 8 * 8;
    if (members == 1) {
        c.chunk = c.total_rows;
        direct_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, direct_member, &c);
}

struct attention_ctx {
    const sn_attention_task *tasks;
    int count;
    size_t stride;
    int head_dim;
    float scale;
    float softcap;
    int width;
    float *scratch;
    size_t scratch_per_member;
    _Atomic int next;
};

static void attention_member(void *arg, int ith, int nth) {
    (void)nth;
    struct attention_ctx *c = arg;
    float *scratch = c->scratch + (size_t)ith * c->scratch_per_member;
    for (;;) {
        const int i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->count) return;
        const sn_attention_task *t = &c->tasks[i];
        sn_attention_head(t->query, t->keys, t->values, c->stride, t->positions, t->first, c->head_dim, c->scale,
                          c->softcap, t->tiny, c->width, scratch, t->out);
    }
}

void sn_pool_attention(sn_pool *pool, const sn_attention_task *tasks, int count, size_t stride,
                       int head_dim, float scale, float softcap, int width, float *scratch, size_t scratch_per_member) {
    struct attention_ctx c = {tasks, count, stride, head_dim, scale, softcap, width, scratch, scratch_per_member, 0};
    if (count == 1) {
        attention_member(&c, 0, 1);
        return;
    }
    sn_pool_run(pool, attention_member, &c);
}
