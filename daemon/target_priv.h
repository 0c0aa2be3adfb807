/*
 * What each target implementation provides behind target.h: a struct
 * target at the start of its own, and its operations.
 */
#ifndef POPFETCHD_TARGET_PRIV_H
#define POPFETCHD_TARGET_PRIV_H

#include "target.h"

struct target_ops {
	int (*begin)(struct target *, unsigned long tag);
	int (*write)(struct target *, const char *, size_t);
	int (*end)(struct target *);
	void (*abort)(struct target *);
	bool (*busy)(struct target *);
	size_t (*pending)(const struct target *);
	void (*close)(struct target *);
	void (*free)(struct target *);
};

struct target {
	const struct target_ops *ops;
};

#endif
