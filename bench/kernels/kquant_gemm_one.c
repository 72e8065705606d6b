// One K-quant prompt product, timed (bench/kernels/kquant_gemm_commits.sh): `sn_kquant_gemm_vnni` on
// random weights and activations of the given shape, best of N calls, after checking it bit for bit
// against the row kernel (`sn_kquant_rows`). Prints GMAC/s (weight rows x columns x activations per
// second). Exit status 1 if the bits differ.
//
//   harness TYPE ROWS COLUMNS TOKENS REPS     (TYPE: 12 = Q4_K, 14 = Q6_K)
#include "sn_kernels.h"
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static unsigned long long rng=88172645463325252ull;
static unsigned next(void){rng^=rng<<13;rng^=rng>>7;rng^=rng<<17;return (unsigned)rng;}
int main(int argc,char**argv){
  int type=argc>1?atoi(argv[1]):SN_Q4_K, rows=argc>2?atoi(argv[2]):8192, cols=argc>3?atoi(argv[3]):2048, tokens=argc>4?atoi(argv[4]):64, reps=argc>5?atoi(argv[5]):20;
  int nb=cols/256; size_t bb=type==SN_Q4_K?144:210, row_bytes=nb*bb;
  uint8_t*w=malloc(rows*row_bytes); for(size_t i=0;i<rows*row_bytes;i++)w[i]=(uint8_t)next();
  for(int r=0;r<rows;r++)for(int b=0;b<nb;b++){uint8_t*x=w+r*row_bytes+b*bb; uint16_t d=_cvtss_sh((next()%1000+1)*1e-5f,0),m=_cvtss_sh((next()%1000)*1e-5f,0);
    if(type==SN_Q4_K){memcpy(x,&d,2);memcpy(x+2,&m,2);}else memcpy(x+208,&d,2);}
  float*x=malloc(sizeof(float)*cols*tokens); for(size_t i=0;i<(size_t)cols*tokens;i++)x[i]=((int)(next()%2001)-1000)*1e-3f;
  size_t as=nb*292; uint8_t*a=malloc(as*tokens); for(int t=0;t<tokens;t++)sn_quantize_q8_K(x+(size_t)t*cols,nb,a+t*as);
  float*o=malloc(sizeof(float)*rows*tokens), *o2=malloc(sizeof(float)*rows*tokens);
  sn_matmul_job job={type,w,row_bytes,rows,cols/32,o,rows};
  sn_kquant_rows(&job,0,rows,a,as,tokens); job.out=o2; sn_kquant_gemm_vnni(&job,0,rows,a,as,tokens);
  int same=memcmp(o,o2,sizeof(float)*rows*tokens)==0;
  double best=1e9; for(int i=0;i<reps;i++){double t=now(); sn_kquant_gemm_vnni(&job,0,rows,a,as,tokens); t=now()-t; if(t<best)best=t;}
  printf("type %d %dx%d tokens %d: %.1f GMAC/s best, bits %s\n",type,rows,cols,tokens,(double)rows*cols*tokens/best*1e-9,same?"identical":"DIFFER");
  return !same;
}
