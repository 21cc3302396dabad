// One kernel body compiled once per vector width, the width chosen at run time.
//
// A kernel is a struct K with a static `body(args...)`, written as plain loops over arrays and
// marked TG_INLINE. run_simd<K>(args...) calls it from one of three entry points compiled for
// AVX-512, AVX2 with FMA, or the baseline (SSE2 on x86-64), whichever simd() says (common.h):
// the compiler vectorises the same loops three times, at three widths, and no flag like
// -march=native is needed at build time. Off x86 the attributes are empty: three copies of the
// portable code.
//
// The entry points live in an anonymous namespace, so each file has its own, and only they carry
// a target attribute: functions they call that are not inlined (std:: helpers, say) stay compiled
// for the baseline, so no AVX-512 code can end up where another file would run it.
#pragma once

#include "common.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#if defined(__clang__)
#define TG_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define TG_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#define TG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define TG_TARGET_AVX512
#define TG_TARGET_AVX2
#endif
#if defined(__GNUC__)
#define TG_INLINE inline __attribute__((always_inline))
#else
#define TG_INLINE inline
#endif

namespace tg {
namespace {

template <class K, class... A> TG_TARGET_AVX512 void run_avx512(A... a) { K::body(a...); }
template <class K, class... A> TG_TARGET_AVX2 void run_avx2(A... a) { K::body(a...); }
template <class K, class... A> void run_portable(A... a) { K::body(a...); }
template <class K, class... A> void run_simd(A... a) {
    switch (simd()) {
        case Simd::avx512: run_avx512<K>(a...); break;
        case Simd::avx2: run_avx2<K>(a...); break;
        default: run_portable<K>(a...);
    }
}

}  // namespace
}  // namespace tg
