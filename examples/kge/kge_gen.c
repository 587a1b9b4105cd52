// SPDX-License-Identifier: MIT
/*
 * examples/kge/kge_gen.c - kge-gen: a synthetic knowledge graph in libkge's
 * layout, with skewed entity and relation frequencies and a planted
 * structure that a ComplEx model can learn.
 *
 * The recipe:
 *   - entity popularity Zipf(a) and relation popularity Zipf(b) over
 *     randomly permuted ids: the k-th most popular entity has probability
 *     proportional to k^-a, and which id is the k-th most popular is a
 *     random permutation (likewise for relations);
 *   - a planted structure: every entity belongs to one of C clusters, the
 *     elements of the cyclic group Z_C, and every relation r is a shift t_r
 *     in Z_C.  A triple (s, r, o) has, with probability 1 - noise, its
 *     object in cluster c(s) + t_r (mod C), drawn by popularity inside that
 *     cluster; with probability noise the object is drawn by popularity
 *     from all entities.  A shift of Z_C is diagonal in the Fourier basis
 *     (the characters k -> exp(2 pi i j k / C)), so each relation is a
 *     complex diagonal map, exactly what ComplEx models: with C complex
 *     dimensions a ComplEx model can represent the structure exactly;
 *   - clusters are balanced by popularity mass (entities, most popular
 *     first, each to the cluster with the least mass so far), so the target
 *     cluster c(s) + t_r is about uniform and the objects keep the entity
 *     popularity: entity frequency, counting subjects and objects, is
 *     Zipf(a);
 *   - subjects: by popularity; no self loops (o != s);
 *   - no duplicate triples: a triple drawn again is redrawn (an
 *     open-addressing hash set of the triples drawn so far);
 *   - train, valid and test triples are drawn together, shuffled, and split
 *     in that order, so that all three come from the same distribution and
 *     never share a triple.
 *
 * Everything is deterministic for a seed: one xoshiro256** stream seeded by
 * splitmix64, consumed in a fixed order (entity permutation, relation
 * permutation, relation shifts, triples, the final shuffle).  Zipf draws
 * use an inverse-CDF table and a binary search (exact for any exponent
 * >= 0, including < 1).
 *
 * Output, in directory DIR (libkge's layout, which AdaPM's KGE app reads):
 *   train.del, valid.del, test.del   one "s<TAB>r<TAB>o" line per triple,
 *                                    0-based ids;
 *   entity_ids.del, relation_ids.del "id<TAB>name" maps (names e0, e1, ...
 *                                    and r0, r1, ...);
 *   dataset.yaml                     libkge's metadata (counts, files).
 *
 * Heavy exponents saturate the head (the most popular (subject, relation)
 * pair cannot have more distinct objects than its target cluster holds);
 * those draws are redrawn.  If redraws exceed 200 per triple on average the
 * generator gives up with a message rather than spin.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* --- PRNG: splitmix64 to seed, xoshiro256** to draw ------------------- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_unif(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n > 0 (Lemire's multiply; bias < n/2^64). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* --- Zipf over permuted ids ------------------------------------------- */

struct zipf {
	uint32_t n;
	double *cdf;  /* cdf[k] = P(rank <= k), cdf[n-1] = 1 */
	uint32_t *id; /* id[k]: the id of the k-th most popular item */
};

static int zipf_init(struct zipf *z, uint32_t n, double expo, struct rng *r)
{
	double sum = 0;

	z->n = n;
	z->cdf = malloc((size_t)n * sizeof(*z->cdf));
	z->id = malloc((size_t)n * sizeof(*z->id));
	if (!z->cdf || !z->id) {
		free(z->cdf);
		free(z->id);
		z->cdf = NULL;
		z->id = NULL;
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < n; k++) {
		sum += pow((double)k + 1.0, -expo);
		z->cdf[k] = sum;
	}
	for (uint32_t k = 0; k < n; k++)
		z->cdf[k] /= sum;
	z->cdf[n - 1] = 1.0;
	for (uint32_t k = 0; k < n; k++)
		z->id[k] = k;
	for (uint32_t k = n - 1; k > 0; k--) { /* Fisher-Yates */
		uint32_t j = (uint32_t)rng_below(r, (uint64_t)k + 1);
		uint32_t t = z->id[k];

		z->id[k] = z->id[j];
		z->id[j] = t;
	}
	return 0;
}

static void zipf_free(struct zipf *z)
{
	free(z->cdf);
	free(z->id);
}

/* First k in [lo, hi] with cdf[k] > u (cdf[hi] >= u assumed). */
static inline uint32_t cdf_search(const double *cdf, uint32_t lo, uint32_t hi,
				  double u)
{
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static inline uint32_t zipf_draw(const struct zipf *z, struct rng *r)
{
	return z->id[cdf_search(z->cdf, 0, z->n - 1, rng_unif(r))];
}

/* --- the planted clusters --------------------------------------------- */

/*
 * struct clusters - entity e is in cluster cl[e]; cluster c holds the
 * entities mem[start[c] .. start[c+1]), most popular first, and ccdf over
 * that range is their cumulative popularity normalised to 1 within c.
 */
struct clusters {
	uint32_t C;
	uint32_t *cl;	 /* per entity id */
	uint32_t *start; /* C + 1 */
	uint32_t *mem;	 /* entity ids by cluster, by popularity */
	double *ccdf;	 /* per position in mem */
	double *mass;	 /* C: popularity mass of each cluster */
};

static void clusters_free(struct clusters *c)
{
	free(c->cl);
	free(c->start);
	free(c->mem);
	free(c->ccdf);
	free(c->mass);
}

/*
 * clusters_init() - deal the entities, most popular first, each to the
 * cluster with the least mass so far (ties: the lowest cluster), so that
 * the clusters' masses balance.  Deterministic given @z.
 */
static int clusters_init(struct clusters *c, const struct zipf *z, uint32_t C)
{
	uint32_t n = z->n, *fill = NULL;

	c->C = C;
	c->cl = malloc((size_t)n * sizeof(*c->cl));
	c->start = calloc((size_t)C + 1, sizeof(*c->start));
	c->mem = malloc((size_t)n * sizeof(*c->mem));
	c->ccdf = malloc((size_t)n * sizeof(*c->ccdf));
	c->mass = calloc(C, sizeof(*c->mass));
	fill = malloc((size_t)C * sizeof(*fill));
	if (!c->cl || !c->start || !c->mem || !c->ccdf || !c->mass || !fill) {
		free(fill);
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < n; k++) {
		double p = z->cdf[k] - (k ? z->cdf[k - 1] : 0.0);
		uint32_t best = 0;

		if (k < C) { /* the first C go one to each cluster */
			best = k;
		} else {
			for (uint32_t q = 1; q < C; q++)
				if (c->mass[q] < c->mass[best])
					best = q;
		}
		c->mass[best] += p;
		c->cl[z->id[k]] = best;
		c->start[best + 1]++;
	}
	for (uint32_t q = 0; q < C; q++)
		c->start[q + 1] += c->start[q];
	memcpy(fill, c->start, (size_t)C * sizeof(*fill));
	for (uint32_t k = 0; k < n; k++) { /* by popularity within a cluster */
		uint32_t e = z->id[k], q = c->cl[e], pos = fill[q]++;
		double p = z->cdf[k] - (k ? z->cdf[k - 1] : 0.0);

		c->mem[pos] = e;
		c->ccdf[pos] = (pos > c->start[q] ? c->ccdf[pos - 1] : 0.0) + p;
	}
	for (uint32_t q = 0; q < C; q++) {
		uint32_t lo = c->start[q], hi = c->start[q + 1];

		for (uint32_t pos = lo; pos < hi; pos++)
			c->ccdf[pos] /= c->ccdf[hi - 1];
		if (hi > lo)
			c->ccdf[hi - 1] = 1.0;
	}
	free(fill);
	return 0;
}

/* An entity of cluster @q by popularity (the cluster is not empty). */
static inline uint32_t cluster_draw(const struct clusters *c, uint32_t q,
				    struct rng *r)
{
	return c->mem[cdf_search(c->ccdf, c->start[q], c->start[q + 1] - 1,
				 rng_unif(r))];
}

/* --- set of drawn triples --------------------------------------------- */

/*
 * Open addressing, linear probing, power-of-two capacity at least twice the
 * number of triples; a triple is stored as (s * R + r) * E + o + 1 so that
 * 0 is empty (E^2 R < 2^63 is checked up front).
 */
struct tripleset {
	uint64_t *slot;
	uint64_t mask;
};

static int tripleset_init(struct tripleset *ts, uint64_t n)
{
	uint64_t cap = 16;

	while (cap < 2 * n)
		cap <<= 1;
	ts->slot = calloc(cap, sizeof(*ts->slot));
	if (!ts->slot)
		return -ENOMEM;
	ts->mask = cap - 1;
	return 0;
}

/* Insert @c (non-zero); returns true if it was not there yet. */
static inline int tripleset_insert(struct tripleset *ts, uint64_t c)
{
	uint64_t h = c * 0x9e3779b97f4a7c15ULL;
	uint64_t i = (h ^ (h >> 29)) & ts->mask;

	for (;;) {
		if (ts->slot[i] == c)
			return 0;
		if (!ts->slot[i]) {
			ts->slot[i] = c;
			return 1;
		}
		i = (i + 1) & ts->mask;
	}
}

/* --- output ----------------------------------------------------------- */

struct triple {
	uint32_t s, r, o;
};

struct gen_opts {
	uint32_t ne, nr, clusters;
	uint64_t ntrain, nvalid, ntest, seed;
	double ezipf, rzipf, noise;
	const char *dir;
};

static char *put_u32(char *p, uint32_t x)
{
	char tmp[10];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + x % 10);
		x /= 10;
	} while (x);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* A file in the output directory; NULL (message printed) on failure. */
static FILE *create_in(const char *dir, const char *name, char **pathp)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);
	FILE *f;

	if (!path) {
		fprintf(stderr, "kge-gen: out of memory\n");
		return NULL;
	}
	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "kge-gen: cannot create %s: %s\n", path,
			strerror(errno));
		free(path);
		return NULL;
	}
	*pathp = path;
	return f;
}

/* Close @f and report a write error on @path; frees @path. */
static int close_out(FILE *f, char *path)
{
	int err = 0;

	if (ferror(f)) {
		err = -EIO;
		fprintf(stderr, "kge-gen: writing %s failed\n", path);
	}
	if (fclose(f) && !err) {
		err = -errno;
		fprintf(stderr, "kge-gen: writing %s: %s\n", path,
			strerror(errno));
	}
	free(path);
	return err;
}

/* Triples as "s\tr\to\n" lines, through a large buffer. */
static int write_del(const char *dir, const char *name, const struct triple *t,
		     uint64_t n)
{
	enum { BUF = 1 << 20 };
	char *path = NULL, *buf, *p;
	FILE *f = create_in(dir, name, &path);

	if (!f)
		return -EIO;
	buf = malloc(BUF + 64);
	if (!buf) {
		fprintf(stderr, "kge-gen: out of memory\n");
		close_out(f, path);
		return -ENOMEM;
	}
	p = buf;
	for (uint64_t k = 0; k < n; k++) {
		p = put_u32(p, t[k].s);
		*p++ = '\t';
		p = put_u32(p, t[k].r);
		*p++ = '\t';
		p = put_u32(p, t[k].o);
		*p++ = '\n';
		if (p - buf > BUF - 64) {
			fwrite(buf, 1, (size_t)(p - buf), f);
			p = buf;
		}
	}
	if (p > buf)
		fwrite(buf, 1, (size_t)(p - buf), f);
	free(buf);
	return close_out(f, path);
}

/* An "id\t<prefix>id" map of @n ids (libkge's entity_ids.del). */
static int write_map(const char *dir, const char *name, char prefix, uint32_t n)
{
	char *path = NULL;
	FILE *f = create_in(dir, name, &path);

	if (!f)
		return -EIO;
	for (uint32_t k = 0; k < n; k++)
		fprintf(f, "%u\t%c%u\n", k, prefix, k);
	return close_out(f, path);
}

/* libkge's dataset.yaml, so that libkge can load the directory as is. */
static int write_yaml(const char *dir, const struct gen_opts *o)
{
	char *path = NULL;
	FILE *f = create_in(dir, "dataset.yaml", &path);
	const char *base = strrchr(o->dir, '/');

	if (!f)
		return -EIO;
	base = base && base[1] ? base + 1 : o->dir;
	fprintf(f,
		"# augur kge-gen: entities Zipf(%g), relations Zipf(%g), "
		"%u clusters, noise %g, seed %" PRIu64 "\n",
		o->ezipf, o->rzipf, o->clusters, o->noise, o->seed);
	fprintf(f, "dataset:\n");
	fprintf(f, "  name: %s\n", base);
	fprintf(f, "  num_entities: %u\n", o->ne);
	fprintf(f, "  num_relations: %u\n", o->nr);
	fprintf(f, "  files.entity_ids.filename: entity_ids.del\n");
	fprintf(f, "  files.entity_ids.type: map\n");
	fprintf(f, "  files.relation_ids.filename: relation_ids.del\n");
	fprintf(f, "  files.relation_ids.type: map\n");
	fprintf(f, "  files.train.filename: train.del\n");
	fprintf(f, "  files.train.type: triples\n");
	fprintf(f, "  files.train.size: %" PRIu64 "\n", o->ntrain);
	fprintf(f, "  files.valid.filename: valid.del\n");
	fprintf(f, "  files.valid.type: triples\n");
	fprintf(f, "  files.valid.size: %" PRIu64 "\n", o->nvalid);
	fprintf(f, "  files.test.filename: test.del\n");
	fprintf(f, "  files.test.type: triples\n");
	fprintf(f, "  files.test.size: %" PRIu64 "\n", o->ntest);
	return close_out(f, path);
}

/* clang-format off */
static void usage(FILE *f)
{
	fprintf(f,
"usage: kge-gen [options]\n"
"A synthetic knowledge graph (libkge layout): DIR/train.del, valid.del,\n"
"test.del, entity_ids.del, relation_ids.del and dataset.yaml.\n"
"  -o, --out DIR         output directory, created if need be (default: kge)\n"
"      --entities N      entities (default 14951)\n"
"      --relations N     relations (default 1345)\n"
"      --train N         training triples (default 300000)\n"
"      --valid N         validation triples (default 10000)\n"
"      --test N          test triples (default 10000)\n"
"      --entity-zipf A   entity popularity exponent (default 0.8)\n"
"      --relation-zipf B relation popularity exponent (default 1.0)\n"
"      --clusters C      planted clusters, Z_C (default 16)\n"
"      --noise P         share of objects drawn without the structure\n"
"                        (default 0.1)\n"
"      --seed N          random seed (default 1)\n"
"The defaults are the KGE reference shape of design.md.\n");
}
/* clang-format on */

static int parse_u64(const char *s, uint64_t *out, uint64_t min, uint64_t max)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_dbl(const char *s, double *out, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min) || !(v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"entities", required_argument, NULL, 'E'},
	    {"relations", required_argument, NULL, 'R'},
	    {"train", required_argument, NULL, 'n'},
	    {"valid", required_argument, NULL, 'v'},
	    {"test", required_argument, NULL, 't'},
	    {"entity-zipf", required_argument, NULL, 'a'},
	    {"relation-zipf", required_argument, NULL, 'b'},
	    {"clusters", required_argument, NULL, 'C'},
	    {"noise", required_argument, NULL, 'p'},
	    {"seed", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct gen_opts o = {
	    .ne = 14951,
	    .nr = 1345,
	    .clusters = 16,
	    .ntrain = 300000,
	    .nvalid = 10000,
	    .ntest = 10000,
	    .seed = 1,
	    .ezipf = 0.8,
	    .rzipf = 1.0,
	    .noise = 0.1,
	    .dir = "kge",
	};
	struct zipf ze = {0}, zr = {0};
	struct clusters cl = {0};
	struct tripleset ts = {0};
	struct triple *t = NULL;
	uint32_t *shift = NULL;
	struct rng rng;
	struct stat st;
	uint64_t v, total, draws = 0, max_draws, planted = 0;
	double t0 = now_s();
	int c, err = 0;

	while ((c = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'o':
			o.dir = optarg;
			break;
		case 'E':
			bad = parse_u64(optarg, &v, 2, INT32_MAX);
			o.ne = (uint32_t)v;
			break;
		case 'R':
			bad = parse_u64(optarg, &v, 1, INT32_MAX);
			o.nr = (uint32_t)v;
			break;
		case 'n':
			bad = parse_u64(optarg, &o.ntrain, 1, UINT32_MAX);
			break;
		case 'v':
			bad = parse_u64(optarg, &o.nvalid, 0, UINT32_MAX);
			break;
		case 't':
			bad = parse_u64(optarg, &o.ntest, 0, UINT32_MAX);
			break;
		case 'a':
			bad = parse_dbl(optarg, &o.ezipf, 0, 100);
			break;
		case 'b':
			bad = parse_dbl(optarg, &o.rzipf, 0, 100);
			break;
		case 'C':
			bad = parse_u64(optarg, &v, 1, 1u << 20);
			o.clusters = (uint32_t)v;
			break;
		case 'p':
			bad = parse_dbl(optarg, &o.noise, 0, 1);
			break;
		case 'S':
			bad = parse_u64(optarg, &o.seed, 0, UINT64_MAX);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			const struct option *lo = lopts;

			while (lo->name && lo->val != c)
				lo++;
			fprintf(stderr, "kge-gen: bad value '%s' for --%s\n",
				optarg, lo->name ? lo->name : "?");
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (o.clusters > o.ne) {
		fprintf(stderr,
			"kge-gen: %u clusters for %u entities: at most one "
			"cluster per entity\n",
			o.clusters, o.ne);
		return 2;
	}
	if ((double)o.ne * o.ne * o.nr >= 0x1p63) {
		fprintf(stderr, "kge-gen: entities^2 x relations must be "
				"below 2^63\n");
		return 2;
	}
	total = o.ntrain + o.nvalid + o.ntest;
	if ((double)total > 0.25 * (double)o.ne * (o.ne - 1) * o.nr) {
		fprintf(stderr,
			"kge-gen: %" PRIu64 " triples asked of %u entities "
			"and %u relations: at most a quarter of all triples "
			"can be drawn\n",
			total, o.ne, o.nr);
		return 2;
	}
	if (mkdir(o.dir, 0777) && errno != EEXIST) {
		fprintf(stderr, "kge-gen: cannot create directory %s: %s\n",
			o.dir, strerror(errno));
		return 1;
	}
	if (stat(o.dir, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kge-gen: %s is not a directory\n", o.dir);
		return 1;
	}

	rng_seed(&rng, o.seed);
	if (zipf_init(&ze, o.ne, o.ezipf, &rng) ||
	    zipf_init(&zr, o.nr, o.rzipf, &rng) ||
	    clusters_init(&cl, &ze, o.clusters)) {
		err = -ENOMEM;
		goto out_free;
	}
	shift = malloc((size_t)o.nr * sizeof(*shift));
	t = malloc(total * sizeof(*t));
	if (!shift || !t || tripleset_init(&ts, total)) {
		err = -ENOMEM;
		goto out_free;
	}
	for (uint32_t r = 0; r < o.nr; r++)
		shift[r] = (uint32_t)rng_below(&rng, o.clusters);

	max_draws = 200 * total + 1000000;
	for (uint64_t k = 0; k < total; k++) {
		uint32_t s, r, ob;
		int plant;

		do {
			if (++draws > max_draws) {
				fprintf(
				    stderr,
				    "kge-gen: gave up after %" PRIu64
				    " draws for %" PRIu64
				    " distinct triples: the Zipf heads "
				    "are saturated; ask fewer triples, more "
				    "entities or flatter exponents\n",
				    draws, k);
				err = -EAGAIN;
				goto out_free;
			}
			s = zipf_draw(&ze, &rng);
			r = zipf_draw(&zr, &rng);
			plant = rng_unif(&rng) >= o.noise;
			if (plant)
				ob = cluster_draw(
				    &cl, (cl.cl[s] + shift[r]) % o.clusters,
				    &rng);
			else
				ob = zipf_draw(&ze, &rng);
		} while (ob == s ||
			 !tripleset_insert(
			     &ts, ((uint64_t)s * o.nr + r) * o.ne + ob + 1));
		t[k] = (struct triple){s, r, ob};
		planted += (uint64_t)plant;
	}
	for (uint64_t k = total - 1; k > 0; k--) { /* the split */
		uint64_t j = rng_below(&rng, k + 1);
		struct triple x = t[k];

		t[k] = t[j];
		t[j] = x;
	}

	err = write_del(o.dir, "train.del", t, o.ntrain);
	if (!err)
		err = write_del(o.dir, "valid.del", t + o.ntrain, o.nvalid);
	if (!err)
		err = write_del(o.dir, "test.del", t + o.ntrain + o.nvalid,
				o.ntest);
	if (!err)
		err = write_map(o.dir, "entity_ids.del", 'e', o.ne);
	if (!err)
		err = write_map(o.dir, "relation_ids.del", 'r', o.nr);
	if (!err)
		err = write_yaml(o.dir, &o);
	if (err)
		goto out_free;
	printf("kge-gen: %u entities (Zipf %g), %u relations (Zipf %g), "
	       "%" PRIu64 " train + %" PRIu64 " valid + %" PRIu64
	       " test triples (%.2f draws per triple), %u clusters, "
	       "%.1f%% planted, seed %" PRIu64 ": %s/ in %.2f s\n",
	       o.ne, o.ezipf, o.nr, o.rzipf, o.ntrain, o.nvalid, o.ntest,
	       (double)draws / (double)total, o.clusters,
	       100.0 * (double)planted / (double)total, o.seed, o.dir,
	       now_s() - t0);

out_free:
	free(ts.slot);
	free(t);
	free(shift);
	clusters_free(&cl);
	zipf_free(&zr);
	zipf_free(&ze);
	if (err == -ENOMEM)
		fprintf(stderr, "kge-gen: out of memory\n");
	return err ? 1 : 0;
}
