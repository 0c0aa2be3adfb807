/*
 * heap: a binary min-heap of nodes embedded in the caller's objects, in
 * the order of the caller's less(). Each node knows its place in the
 * array, so that removing or re-keying any node is O(log n), not a
 * search; the heap allocates nothing per node, only its array.
 */
#ifndef POPFETCHD_HEAP_H
#define POPFETCHD_HEAP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

/* HEAP_NONE: the node is in no heap. */
#define HEAP_NONE UINT_MAX

struct heap_node {
	unsigned idx; /* its place in the heap's array, or HEAP_NONE */
};

/* Whether A comes before B. Must be a strict weak order. */
typedef bool (*heap_less_fn)(
    const struct heap_node *a, const struct heap_node *b);

struct heap {
	struct heap_node **v;
	size_t n, cap;
	heap_less_fn less;
};

/* An empty heap ordered by LESS; allocates nothing yet. */
void heap_init(struct heap *h, heap_less_fn less);

/* Frees the array; nodes still in it are marked out (HEAP_NONE). */
void heap_clear(struct heap *h);

/* Marks a node that is in no heap; before its first use. */
void heap_node_init(struct heap_node *n);

/* Whether N is in a heap. */
bool heap_has(const struct heap_node *n);

/* Puts N (in no heap) in; -1 when out of memory (N stays out). */
int heap_insert(struct heap *h, struct heap_node *n);

/* Takes N out of H; nothing if it is in no heap. */
void heap_remove(struct heap *h, struct heap_node *n);

/* N (in H) changed its key: moves it to its place. */
void heap_fix(struct heap *h, struct heap_node *n);

/* The first node, or NULL when H is empty. */
struct heap_node *heap_top(const struct heap *h);

/* The number of nodes in H. */
size_t heap_size(const struct heap *h);

#endif
