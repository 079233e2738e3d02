/*
 * evaluate_sort.h -- the orders of run entries that the evaluate kernels sort by, instances of
 * the one stable sort (sort.h).
 *
 * ev_msort sorts positions (int64) by score descending, then by the context's tie rule:
 *   mode 0 position ascending; mode 1 document id descending in byte order (trec_eval);
 *   mode 2 integer key descending (then position).
 * ev_isort sorts ev_item (score key, 8-byte id prefix, position) in trec_eval's order, reading
 * the id tails only when the prefixes are equal.
 */
#ifndef RANK_KERNELS_EVALUATE_SORT_H
#define RANK_KERNELS_EVALUATE_SORT_H

#include <stdint.h>
#include <string.h>

#include "sort.h"

typedef struct {
    const double *s;             /* scores (by position) */
    const unsigned char *tails;  /* document ids (mode 1): bytes after the first 8, concatenated */
    const int64_t *toff;         /* where each id's tail starts */
    const int64_t *len;          /* byte length of each id */
    const uint64_t *pfx;         /* first 8 bytes of each id, big-endian */
    const int64_t *key;          /* integer tie keys (mode 2) */
    int mode;                    /* 0: ties by position; 1: by docid descending; 2: by key descending */
} ev_sort_ctx;

typedef struct {
    uint64_t skey; /* order-preserving key of the score (larger score, larger key) */
    uint64_t pfx;  /* first 8 bytes of the document id, big-endian */
    int64_t pos;   /* position in the run's columns */
} ev_item;

/* Ids of positions a and b with equal 8-byte prefixes: 1 if a's id is larger in byte order
 * (a longer id whose bytes start with the shorter is larger), -1 if smaller, 0 if equal. */
static inline int ev_tail_cmp(const ev_sort_ctx *c, int64_t a, int64_t b)
{
    int64_t la = c->len[a], lb = c->len[b];
    if (la > 8 && lb > 8) {
        int cmp = memcmp(c->tails + c->toff[a], c->tails + c->toff[b], (size_t)((la < lb ? la : lb) - 8));
        if (cmp != 0) return cmp > 0 ? 1 : -1;
    }
    return la > lb ? 1 : la < lb ? -1 : 0;
}

/* Position a comes strictly before position b. */
static inline int ev_before(const ev_sort_ctx *c, int64_t a, int64_t b)
{
    double sa = c->s[a], sb = c->s[b];
    if (sa > sb) return 1;
    if (sa < sb) return 0;
    if (c->mode == 1) {
        if (c->pfx[a] != c->pfx[b]) return c->pfx[a] > c->pfx[b];
        int t = ev_tail_cmp(c, a, b);
        if (t != 0) return t > 0;
    } else if (c->mode == 2) {
        if (c->key[a] != c->key[b]) return c->key[a] > c->key[b];
    }
    return a < b;
}

/* trec_eval's order: score descending, then document id descending in byte order. */
static inline int ev_item_before(const ev_sort_ctx *c, const ev_item *a, const ev_item *b)
{
    if (a->skey != b->skey) return a->skey > b->skey;
    if (a->pfx != b->pfx) return a->pfx > b->pfx;
    int t = ev_tail_cmp(c, a->pos, b->pos);
    if (t != 0) return t > 0;
    return a->pos < b->pos;
}

#define EV_POS_BEFORE(c, x, y) ev_before((c), *(x), *(y))
RK_STABLE_SORT(ev_msort, int64_t, const ev_sort_ctx *, EV_POS_BEFORE)
RK_STABLE_SORT(ev_isort, ev_item, const ev_sort_ctx *, ev_item_before)

#endif
