// exp, sigmoid and tanh that vectorise: inline, branch-free (selects on bits instead of ifs),
// only +, *, comparisons and bit moves, so a loop that calls them compiles to SSE2, AVX2 or
// AVX-512 code like any other (std::exp and std::tanh are library calls, one value at a time).
//
// exp_fast(x): x = n*ln2 + r with n = round(x / ln2) (by adding and subtracting 1.5*2^mantissa)
// and |r| <= ln2/2 (ln2 in two parts, so that n*ln2_hi is exact); exp(r) by its Taylor polynomial
// (degree 7 in float32: relative error below 2.5e-7, 2 ulp; degree 12 in float64: below 4e-16),
// times 2^n built in the exponent bits (as two factors, so that every factor is a normal number).
// NaN stays NaN; -inf gives 0, +inf gives inf.
// sigmoid(x) = 1 / (1 + exp(-x)); tanh(x) = sign(x) * (1 - 2 / (exp(2|x|) + 1)), absolute error
// a few ulp of 1.
#pragma once

#include <cstdint>
#include <cstring>

#include "simd.h"

namespace tg {
namespace {

template <class T> struct ExpConst;
template <> struct ExpConst<float> {
    using Bits = std::uint32_t;
    static constexpr int mant = 23, bias = 127;
    static constexpr float lo = -104.0f, hi = 89.0f;        // beyond: 0 and inf in any case
    static constexpr float round = 12582912.0f;             // 1.5 * 2^23
    static constexpr float log2e = 1.44269504088896341f;
    static constexpr float ln2_hi = 0.693359375f;           // 9 significant bits: n*ln2_hi exact
    static constexpr float ln2_lo = -2.12194440e-4f;
};
template <> struct ExpConst<double> {
    using Bits = std::uint64_t;
    static constexpr int mant = 52, bias = 1023;
    static constexpr double lo = -746.0, hi = 710.0;
    static constexpr double round = 6755399441055744.0;     // 1.5 * 2^52
    static constexpr double log2e = 1.4426950408889634074;
    static constexpr double ln2_hi = 6.93145751953125e-1;   // 20 significant bits: n*ln2_hi exact
    static constexpr double ln2_lo = 1.42860682030941723212e-6;
};

template <class T> TG_INLINE typename ExpConst<T>::Bits bits_of(T v) {
    typename ExpConst<T>::Bits b;
    std::memcpy(&b, &v, sizeof b);
    return b;
}
template <class T> TG_INLINE T from_bits(typename ExpConst<T>::Bits b) {
    T v;
    std::memcpy(&v, &b, sizeof v);
    return v;
}

// 2^k for an integral value k in [-bias+1, bias], read from `t = k + round` (the integer sits in
// t's low mantissa bits; unsigned arithmetic, so a NaN's bits wrap harmlessly).
template <class T> TG_INLINE T pow2_of(T t) {
    using C = ExpConst<T>;
    using Bits = typename C::Bits;
    return from_bits<T>((bits_of(t) - bits_of(C::round) + Bits(C::bias)) << C::mant);
}

// c ? a : b on the bits. GCC does not turn `c ? a : b` on floats into a vector select (under
// the default -ftrapping-math) when more arithmetic follows, except with AVX-512's masks; on
// integer masks it does, at every width.
template <class T> TG_INLINE T select(bool c, T a, T b) {
    using Bits = typename ExpConst<T>::Bits;
    const Bits m = Bits(0) - Bits(c);
    return from_bits<T>((bits_of(a) & m) | (bits_of(b) & ~m));
}

template <class T> TG_INLINE T exp_fast(T x) {
    using C = ExpConst<T>;
    x = select(x < C::lo, C::lo, x);              // a NaN passes both (the comparisons are false)
    x = select(x > C::hi, C::hi, x);
    const T n = (x * C::log2e + C::round) - C::round;        // round(x / ln2)
    const T r = (x - n * C::ln2_hi) - n * C::ln2_lo;         // |r| <= ln2/2
    T p;
    if constexpr (sizeof(T) == 4) {
        p = T(1.0 / 720);
        p = p * r + T(1.0 / 120);
        p = p * r + T(1.0 / 24);
        p = p * r + T(1.0 / 6);
        p = p * r + T(0.5);
        p = p * r + T(1);
        p = p * r + T(1);
    } else {
        p = T(1.0 / 479001600);                   // 1/12!
        p = p * r + T(1.0 / 39916800);
        p = p * r + T(1.0 / 3628800);
        p = p * r + T(1.0 / 362880);
        p = p * r + T(1.0 / 40320);
        p = p * r + T(1.0 / 5040);
        p = p * r + T(1.0 / 720);
        p = p * r + T(1.0 / 120);
        p = p * r + T(1.0 / 24);
        p = p * r + T(1.0 / 6);
        p = p * r + T(0.5);
        p = p * r + T(1);
        p = p * r + T(1);
    }
    // 2^n = 2^n1 * 2^n2, n1 about n/2: each factor a normal number for n in [-150, 129]
    const T t1 = n * T(0.5) + C::round;
    const T n1 = t1 - C::round;
    const T t2 = (n - n1) + C::round;
    return p * pow2_of(t1) * pow2_of(t2);
}

template <class T> TG_INLINE T sigmoid_fast(T x) { return T(1) / (T(1) + exp_fast(-x)); }

template <class T> TG_INLINE T tanh_fast(T x) {
    const T a = select(x < T(0), -x, x);
    const T t = T(1) - T(2) / (exp_fast(T(2) * a) + T(1));
    return select(x < T(0), -t, t);                // NaN: t is NaN either way
}

}  // namespace
}  // namespace tg
