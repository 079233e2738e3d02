/* The lambdarank pair row with x86 vector intrinsics, written once for every vector width.
 *
 * ltr_kernels.h includes this file once per instruction set, with LTR_ISA defined as its
 * prefix (avx2, avx512), after defining for that prefix P: P_W (the intrinsic width pasted
 * into _mm<W>_<op>_pd: 256, 512), P_FN (the attributes of the function: target ISA), the types
 * P_vec and P_mask, and the helpers P_tail (the mask of the last step), P_load and P_add_to
 * (masked), P_keep (zero the lanes outside the mask), P_sign (-1/0/+1 by label), P_den
 * (0.01 + |delta| or 1), P_abs, P_sel_ge0, P_trunc, P_recip, P_sum, P_rint, P_ldexp (p 2^k),
 * P_gt (a mask), P_sel and P_add_where (by a mask).
 *
 * It defines P_exp, P_log1p01 and P_row_grid: ltr_row_grid (the grid sigmoid, or the exact logistic function with
 * `exact`), one vector of pairs per step, the last step masked so nothing is read or written
 * past cnt; the grid value exp(x_b) is computed (P_exp) rather than looked up: gathers are slow
 * on many x86 CPUs. Lanes beyond cnt are exact zeros in every sum.
 * acc = (lambda of i, hessian of i, sum of |lambda|, loss of the row). */

#define LTR_CAT_(a, b) a##b
#define LTR_CAT(a, b) LTR_CAT_(a, b)
#define LTR_P(name) LTR_CAT(LTR_ISA, _##name)
#define LTR_VEC LTR_P(vec)
#define LTR_OP(op) LTR_OP_(LTR_P(W), op)
#define LTR_OP_(w, op) LTR_OP__(w, op)
#define LTR_OP__(w, op) _mm##w##_##op##_pd

/* exp(x) for |x| <= 40: x = k ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor polynomial, times 2^k. */
LTR_P(FN) inline LTR_VEC LTR_P(exp)(LTR_VEC x)
{
    LTR_VEC k = LTR_P(rint)(LTR_OP(mul)(x, LTR_OP(set1)(1.4426950408889634)));
    LTR_VEC r = LTR_OP(fnmadd)(k, LTR_OP(set1)(LTR_LN2_HI), x);
    r = LTR_OP(fnmadd)(k, LTR_OP(set1)(LTR_LN2_LO), r);
    LTR_VEC p;
    LTR_EXP_POLY(LTR_OP(fmadd), LTR_OP(mul), LTR_OP(set1), p, r)
    return LTR_P(ldexp)(p, k);
}

/* log1p(u) for 0 <= u <= 1: m = 1 + u (rounded; the rounding error restored by a first-order
 * term), m scaled into [sqrt(1/2), sqrt(2)] by 2^-k, log m = 2 atanh(s), s = (m - 1) / (m + 1),
 * |s| <= 0.172, by the odd series to s^21 (truncation error below 1e-17 relative). */
LTR_P(FN) inline LTR_VEC LTR_P(log1p01)(LTR_VEC u)
{
    const LTR_VEC one = LTR_OP(set1)(1.0);
    LTR_VEC m = LTR_OP(add)(one, u);
    LTR_VEC c = LTR_OP(div)(LTR_OP(sub)(u, LTR_OP(sub)(m, one)), m);
    LTR_P(mask) big = LTR_P(gt)(m, 1.4142135623730951);
    m = LTR_P(sel)(big, m, LTR_OP(mul)(m, LTR_OP(set1)(0.5)));
    LTR_VEC f = LTR_OP(sub)(m, one);
    LTR_VEC s = LTR_OP(div)(f, LTR_OP(add)(LTR_OP(set1)(2.0), f));
    LTR_VEC z = LTR_OP(mul)(s, s), p;
    LTR_ATANH_POLY(LTR_OP(fmadd), LTR_OP(mul), LTR_OP(set1), p, z)
    LTR_VEC lg = LTR_OP(fmadd)(LTR_OP(add)(s, s), p, c);
    return LTR_P(add_where)(big, lg, LTR_OP(set1)(0.6931471805599453));
}

LTR_P(FN) void LTR_P(row_grid)(Py_ssize_t i, Py_ssize_t cnt, const double *ss, const double *ld, const double *gs,
                               const double *disc, double inv_max, double sigma, double eps, int norm_on,
                               int exact, int want_loss, double lo, double factor, double *lam, double *hs,
                               double *acc)
{
    const Py_ssize_t lanes = (Py_ssize_t)(sizeof(LTR_VEC) / sizeof(double));
    const LTR_VEC si = LTR_OP(set1)(ss[i]), li = LTR_OP(set1)(ld[i]), gi = LTR_OP(set1)(gs[i]);
    const LTR_VEC di = LTR_OP(set1)(disc[i]), vinv = LTR_OP(set1)(inv_max);
    const LTR_VEC vsig = LTR_OP(set1)(sigma), vs2 = LTR_OP(set1)(sigma * sigma);
    const LTR_VEC veps = LTR_OP(set1)(norm_on ? eps : 1.0);
    const LTR_VEC vlo = LTR_OP(set1)(lo), vhi = LTR_OP(set1)(-lo), vfac = LTR_OP(set1)(factor);
    const LTR_VEC one = LTR_OP(set1)(1.0), zero = LTR_OP(setzero)();
    const LTR_VEC bmax = LTR_OP(set1)(LTR_SIGMOID_BINS - 1), vstep = LTR_OP(set1)(1.0 / factor);
    const LTR_VEC v700 = LTR_OP(set1)(700.0);
    LTR_VEC al = zero, ah = zero, as = zero, aloss = zero;
    for (Py_ssize_t j = i + 1; j < cnt; j += lanes) {
        const LTR_P(mask) m = LTR_P(tail)(cnt - j);
        LTR_VEC sg = LTR_P(sign)(m, li, LTR_P(load)(m, ld + j));
        LTR_VEC delta = LTR_P(keep)(m, LTR_OP(mul)(sg, LTR_OP(sub)(si, LTR_P(load)(m, ss + j))));
        LTR_VEC w = LTR_OP(mul)(sg, LTR_OP(sub)(gi, LTR_P(load)(m, gs + j)));
        w = LTR_P(keep)(m, LTR_OP(mul)(LTR_OP(mul)(w, LTR_OP(sub)(di, LTR_P(load)(m, disc + j))), vinv));
        LTR_VEC den = LTR_P(den)(veps, delta, norm_on);
        LTR_VEC e, np_ = one, nq_;
        if (exact) {  /* rho = np_ / (1 + e), 1 - rho = nq_ / (1 + e), e = exp(-|sigma delta|) */
            LTR_VEC x = LTR_OP(mul)(vsig, delta);
            e = LTR_P(exp)(LTR_OP(sub)(zero, LTR_OP(min)(LTR_P(abs)(x), v700)));
            np_ = LTR_P(sel_ge0)(x, one, e);
            nq_ = LTR_P(sel_ge0)(x, e, one);
        } else {  /* rho = 1 / (1 + e), e = exp(x_b) at the grid point below delta */
            LTR_VEC c = LTR_OP(min)(LTR_OP(max)(delta, vlo), vhi);  /* NaN -> lo */
            LTR_VEC b = LTR_OP(min)(LTR_P(trunc)(LTR_OP(mul)(LTR_OP(sub)(c, vlo), vfac)), bmax);
            e = LTR_P(exp)(LTR_OP(mul)(LTR_OP(add)(LTR_OP(mul)(b, vstep), vlo), vsig));
            nq_ = e;
        }
        LTR_VEC r = LTR_P(recip)(LTR_OP(mul)(LTR_OP(add)(one, e), den));
        LTR_VEC q = LTR_OP(mul)(w, r);
        LTR_VEC pl = LTR_OP(mul)(LTR_OP(mul)(vsig, q), np_);
        LTR_VEC ph = LTR_OP(mul)(LTR_OP(mul)(LTR_OP(mul)(vs2, q), LTR_OP(mul)(np_, nq_)), LTR_OP(mul)(r, den));
        LTR_VEC spl = LTR_OP(mul)(sg, pl);
        al = LTR_OP(sub)(al, spl);
        ah = LTR_OP(add)(ah, ph);
        as = LTR_OP(add)(as, pl);
        if (want_loss) {  /* (w / den) * log(1 + exp(-sigma delta)) */
            LTR_VEC x = LTR_OP(mul)(vsig, delta);
            LTR_VEC em = exact ? e : LTR_P(exp)(LTR_OP(sub)(zero, LTR_OP(min)(LTR_P(abs)(x), v700)));
            LTR_VEC sp = LTR_OP(add)(LTR_OP(max)(LTR_OP(sub)(zero, x), zero), LTR_P(log1p01)(em));
            aloss = LTR_OP(fmadd)(LTR_OP(mul)(q, LTR_OP(add)(one, e)), sp, aloss);
        }
        LTR_P(add_to)(lam + j, m, spl);
        LTR_P(add_to)(hs + j, m, ph);
    }
    acc[0] = LTR_P(sum)(al);
    acc[1] = LTR_P(sum)(ah);
    acc[2] = LTR_P(sum)(as);
    acc[3] = LTR_P(sum)(aloss);
}

#undef LTR_CAT_
#undef LTR_CAT
#undef LTR_P
#undef LTR_VEC
#undef LTR_OP
#undef LTR_OP_
#undef LTR_OP__
