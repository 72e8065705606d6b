// OpenBLAS with 2 threads against 2 threads each running a single-threaded cblas_sgemm on half the
// columns (what BLASProjector does on the engine pool), on the shapes of the models; median and worst
// of 9. cc -O2 blas_threads.c $(pkg-config --cflags --libs openblas) -lpthread; ./a.out M N K
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int M,N,K; static float *A,*B,*C;
static void* half(void*arg){long i=(long)arg; int n=N/2; cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,M,n,K,1,A,K,B+(long)i*n*K,K,0,C+i*n,N); return 0;}
int main(int argc,char**argv){ M=atoi(argv[1]);N=atoi(argv[2]);K=atoi(argv[3]);
 A=malloc(4L*M*K);B=malloc(4L*N*K);C=malloc(4L*M*N); for(long i=0;i<(long)M*K;i++)A[i]=i%7*.1f; for(long i=0;i<(long)N*K;i++)B[i]=i%5*.1f;
 double t1[9],t2[9]; for(int r=0;r<9;r++){
  openblas_set_num_threads(2); double t=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,M,N,K,1,A,K,B,K,0,C,N); t1[r]=now()-t;
  openblas_set_num_threads(1); pthread_t th[2]; t=now(); for(long i=0;i<2;i++)pthread_create(&th[i],0,half,(void*)i); for(int i=0;i<2;i++)pthread_join(th[i],0); t2[r]=now()-t;}
 int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;} qsort(t1,9,8,cmp);qsort(t2,9,8,cmp); double b1=t1[4],b2=t2[4],w1=t1[8],w2=t2[8];
 double f=2.0*M*N*K/1e9; printf("M=%d N=%d K=%d: OpenBLAS 2 threads %.0f GFLOP/s, 2 x single-threaded halves %.0f GFLOP/s median of 9; worst %.0f / %.0f\n",M,N,K,f/b1,f/b2,f/w1,f/w2);
}
