/* The binary heap: array-based, with each node's index kept in it. */
#include <stdlib.h>

#include "heap.h"

void
heap_init(struct heap *h, heap_less_fn less)
{
	h->v = NULL;
	h->n = h->cap = 0;
	h->less = less;
}

void
heap_clear(struct heap *h)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		h->v[i]->idx = HEAP_NONE;
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

void
heap_node_init(struct heap_node *n)
{
	n->idx = HEAP_NONE;
}

bool
heap_has(const struct heap_node *n)
{
	return n->idx != HEAP_NONE;
}

/* Puts N at I and tells it so. */
static void
place(struct heap *h, size_t i, struct heap_node *n)
{
	h->v[i] = n;
	n->idx = (unsigned)i;
}

/* Moves the node at I towards the root while it comes first. */
static void
sift_up(struct heap *h, size_t i)
{
	struct heap_node *n = h->v[i];
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (!h->less(n, h->v[parent]))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, n);
}

/* Moves the node at I towards the leaves while a child comes first. */
static void
sift_down(struct heap *h, size_t i)
{
	struct heap_node *n = h->v[i];
	size_t child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->less(h->v[child + 1], h->v[child]))
			child++;
		if (!h->less(h->v[child], n))
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, n);
}

int
heap_insert(struct heap *h, struct heap_node *n)
{
	struct heap_node **v;
	size_t cap;

	if (h->n == h->cap) {
		cap = h->cap != 0 ? h->cap * 2 : 64;
		/* Indexes are unsigned, and HEAP_NONE is taken. */
		if (cap >= HEAP_NONE ||
		    (v = reallocarray(h->v, cap, sizeof(*v))) == NULL)
			return -1;
		h->v = v;
		h->cap = cap;
	}
	place(h, h->n++, n);
	sift_up(h, h->n - 1);
	return 0;
}

void
heap_remove(struct heap *h, struct heap_node *n)
{
	size_t i = n->idx;

	if (i == HEAP_NONE)
		return;
	n->idx = HEAP_NONE;
	if (i == --h->n)
		return;
	/* The last node fills the hole, then goes up or down. */
	place(h, i, h->v[h->n]);
	heap_fix(h, h->v[i]);
}

void
heap_fix(struct heap *h, struct heap_node *n)
{
	size_t i = n->idx;

	if (i > 0 && h->less(n, h->v[(i - 1) / 2]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

struct heap_node *
heap_top(const struct heap *h)
{
	return h->n > 0 ? h->v[0] : NULL;
}

size_t
heap_size(const struct heap *h)
{
	return h->n;
}
