// SPDX-License-Identifier: MIT
/*
 * examples/mf/mf_gen.c - mf-gen: synthetic matrix-factorization data in the
 * recipe of NuPS and AdaPM (and Lapse before them).
 *
 * The recipe:
 *   - a planted rank-r model: row factors U (rows x r) and column factors
 *     V (cols x r), every entry drawn from N(0, 1/sqrt(r)) (standard
 *     deviation r^-1/4), so that a planted value U_i . V_j has variance 1;
 *   - cells (i, j) drawn with row popularity Zipf(a) and column popularity
 *     Zipf(b) over randomly permuted ids: the k-th most popular row has
 *     probability proportional to k^-a, and which row id is the k-th most
 *     popular is a random permutation (likewise for columns), so that
 *     popularity is not correlated with id order;
 *   - the value of a cell is U_i . V_j + N(0, sigma^2);
 *   - no duplicate cells: a cell drawn twice is redrawn (an open-addressing
 *     hash set of the cells drawn so far);
 *   - train + test cells are drawn together, then shuffled, and the first
 *     nnz become the training set, the rest the test set, so that both come
 *     from the same distribution and never share a cell.
 *
 * Everything is deterministic for a seed: one xoshiro256** stream seeded by
 * splitmix64, consumed in a fixed order (permutations, U, V, cells with
 * their noise, the final shuffle).  Zipf draws use an inverse-CDF table and
 * a binary search (exact for any exponent >= 0, including < 1).
 *
 * Output: MatrixMarket coordinate files PREFIX.train.mm and PREFIX.test.mm
 * ("%%MatrixMarket matrix coordinate real general", comment lines with the
 * parameters, "rows cols nnz", then 1-based "i j v" lines), written through
 * a large buffer with hand-rolled number formatting (values with six
 * decimals).
 *
 * Heavy exponents saturate the head of the distribution (the most popular
 * row may have fewer cells than its share of the draws); those draws are
 * redrawn.  If redraws exceed 200 per cell on average the generator gives up
 * with a message rather than spin.
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

/* Standard normal (Marsaglia's polar method, one value per call). */
static double rng_normal(struct rng *r)
{
	double u, v, s;

	do {
		u = 2.0 * rng_unif(r) - 1.0;
		v = 2.0 * rng_unif(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	return u * sqrt(-2.0 * log(s) / s);
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

static inline uint32_t zipf_draw(const struct zipf *z, struct rng *r)
{
	double u = rng_unif(r);
	uint32_t lo = 0, hi = z->n - 1;

	while (lo < hi) { /* first k with cdf[k] > u */
		uint32_t mid = lo + (hi - lo) / 2;

		if (z->cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return z->id[lo];
}

/* --- set of drawn cells ----------------------------------------------- */

/*
 * Open addressing, linear probing, power-of-two capacity at least twice the
 * number of cells; a cell is stored as i * cols + j + 1 so that 0 is empty.
 */
struct cellset {
	uint64_t *slot;
	uint64_t mask;
};

static int cellset_init(struct cellset *cs, uint64_t n)
{
	uint64_t cap = 16;

	while (cap < 2 * n)
		cap <<= 1;
	cs->slot = calloc(cap, sizeof(*cs->slot));
	if (!cs->slot)
		return -ENOMEM;
	cs->mask = cap - 1;
	return 0;
}

/* Insert @c (non-zero); returns true if it was not there yet. */
static inline int cellset_insert(struct cellset *cs, uint64_t c)
{
	uint64_t h = c * 0x9e3779b97f4a7c15ULL;
	uint64_t i = (h ^ (h >> 29)) & cs->mask;

	for (;;) {
		if (cs->slot[i] == c)
			return 0;
		if (!cs->slot[i]) {
			cs->slot[i] = c;
			return 1;
		}
		i = (i + 1) & cs->mask;
	}
}

/* --- output ----------------------------------------------------------- */

struct cell {
	uint32_t i, j;
	float v;
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

/* @v with six decimals ("%.6f"), fast for the common range. */
static char *put_fixed6(char *p, double v)
{
	uint64_t m, ip;
	uint32_t fp;

	if (!(fabs(v) < 1e12)) /* huge or not finite: let libc do it */
		return p + sprintf(p, "%.6g", v);
	if (v < 0) {
		v = -v;
		*p++ = '-';
	}
	m = (uint64_t)llround(v * 1e6);
	ip = m / 1000000;
	fp = (uint32_t)(m % 1000000);
	if (ip >> 32)
		p += sprintf(p, "%" PRIu64, ip);
	else
		p = put_u32(p, (uint32_t)ip);
	*p++ = '.';
	for (int d = 5; d >= 0; d--) {
		p[d] = (char)('0' + fp % 10);
		fp /= 10;
	}
	return p + 6;
}

struct gen_opts {
	uint32_t rows, cols, rank;
	uint64_t nnz, ntest, seed;
	double sigma, row_zipf, col_zipf;
	const char *prefix;
};

static int write_mm(const char *path, const struct gen_opts *o,
		    const struct cell *c, uint64_t n, const char *what)
{
	enum { BUF = 1 << 20 };
	FILE *f;
	char *buf, *p;
	int err = 0;

	f = fopen(path, "w");
	if (!f) {
		err = -errno;
		fprintf(stderr, "mf-gen: cannot create %s: %s\n", path,
			strerror(errno));
		return err;
	}
	buf = malloc(BUF + 64);
	if (!buf) {
		err = -ENOMEM;
		goto out_close;
	}
	fprintf(f, "%%%%MatrixMarket matrix coordinate real general\n");
	fprintf(f,
		"%% augur mf-gen: %s cells of a planted rank-%u model + "
		"N(0, %g^2) noise\n",
		what, o->rank, o->sigma);
	fprintf(f,
		"%% rows %u cols %u train %" PRIu64 " test %" PRIu64
		" row-zipf %g col-zipf %g seed %" PRIu64 "\n",
		o->rows, o->cols, o->nnz, o->ntest, o->row_zipf, o->col_zipf,
		o->seed);
	fprintf(f, "%u %u %" PRIu64 "\n", o->rows, o->cols, n);
	p = buf;
	for (uint64_t k = 0; k < n; k++) {
		p = put_u32(p, c[k].i + 1);
		*p++ = ' ';
		p = put_u32(p, c[k].j + 1);
		*p++ = ' ';
		p = put_fixed6(p, c[k].v);
		*p++ = '\n';
		if (p - buf > BUF - 64) {
			if (fwrite(buf, 1, (size_t)(p - buf), f) !=
			    (size_t)(p - buf))
				goto out_ioerr;
			p = buf;
		}
	}
	if (p > buf &&
	    fwrite(buf, 1, (size_t)(p - buf), f) != (size_t)(p - buf))
		goto out_ioerr;
	free(buf);
	if (fclose(f)) {
		err = -errno;
		fprintf(stderr, "mf-gen: writing %s: %s\n", path,
			strerror(errno));
	}
	return err;

out_ioerr:
	err = -errno;
	fprintf(stderr, "mf-gen: writing %s: %s\n", path, strerror(errno));
	free(buf);
out_close:
	fclose(f);
	return err;
}

/* clang-format off */
static void usage(FILE *f)
{
	fprintf(f,
"usage: mf-gen [options]\n"
"Synthetic matrix-factorization data (NuPS/AdaPM recipe) as MatrixMarket\n"
"coordinate files PREFIX.train.mm and PREFIX.test.mm.\n"
"  -o, --out PREFIX      output prefix (default: mf)\n"
"      --rows N          matrix rows (default 20000)\n"
"      --cols N          matrix columns (default 2000)\n"
"      --nnz N           training cells (default 400000)\n"
"      --test N          test cells (default 40000)\n"
"      --rank R          rank of the planted model (default 10)\n"
"      --sigma S         noise standard deviation (default 0.1)\n"
"      --row-zipf A      row popularity exponent (default 1.1)\n"
"      --col-zipf B      column popularity exponent (default 1.1)\n"
"      --seed N          random seed (default 1)\n"
"The reference shape of design.md: --rows 100000 --cols 10000 --nnz 2000000\n"
"--test 200000 --row-zipf 0.5 --col-zipf 0.7.\n");
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

static int parse_dbl(const char *s, double *out, double min)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= min) || !isfinite(v))
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
	    {"rows", required_argument, NULL, 'R'},
	    {"cols", required_argument, NULL, 'C'},
	    {"nnz", required_argument, NULL, 'n'},
	    {"test", required_argument, NULL, 't'},
	    {"rank", required_argument, NULL, 'r'},
	    {"sigma", required_argument, NULL, 's'},
	    {"row-zipf", required_argument, NULL, 'a'},
	    {"col-zipf", required_argument, NULL, 'b'},
	    {"seed", required_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct gen_opts o = {
	    .rows = 20000,
	    .cols = 2000,
	    .rank = 10,
	    .nnz = 400000,
	    .ntest = 40000,
	    .seed = 1,
	    .sigma = 0.1,
	    .row_zipf = 1.1,
	    .col_zipf = 1.1,
	    .prefix = "mf",
	};
	struct zipf zr = {0}, zc = {0};
	struct cellset cs = {0};
	struct cell *cells = NULL;
	float *U = NULL, *V = NULL;
	char *path = NULL;
	struct rng rng;
	uint64_t v, total, draws = 0, max_draws;
	double std, t0 = now_s();
	int c, err = 0;

	while ((c = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'o':
			o.prefix = optarg;
			break;
		case 'R':
			bad = parse_u64(optarg, &v, 1, UINT32_MAX - 1);
			o.rows = (uint32_t)v;
			break;
		case 'C':
			bad = parse_u64(optarg, &v, 1, UINT32_MAX - 1);
			o.cols = (uint32_t)v;
			break;
		case 'n':
			bad = parse_u64(optarg, &o.nnz, 1, UINT64_MAX / 4);
			break;
		case 't':
			bad = parse_u64(optarg, &o.ntest, 0, UINT64_MAX / 4);
			break;
		case 'r':
			bad = parse_u64(optarg, &v, 1, 4096);
			o.rank = (uint32_t)v;
			break;
		case 's':
			bad = parse_dbl(optarg, &o.sigma, 0);
			break;
		case 'a':
			bad = parse_dbl(optarg, &o.row_zipf, 0);
			break;
		case 'b':
			bad = parse_dbl(optarg, &o.col_zipf, 0);
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
			fprintf(stderr, "mf-gen: bad value '%s' for --%s\n",
				optarg, lo->name ? lo->name : "?");
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	total = o.nnz + o.ntest;
	if ((double)total > 0.5 * (double)o.rows * (double)o.cols) {
		fprintf(stderr,
			"mf-gen: %" PRIu64 " cells asked of a %u x %u "
			"matrix: at most half of the cells can be drawn\n",
			total, o.rows, o.cols);
		return 2;
	}

	rng_seed(&rng, o.seed);
	err = zipf_init(&zr, o.rows, o.row_zipf, &rng);
	if (err)
		goto out_nomem;
	err = zipf_init(&zc, o.cols, o.col_zipf, &rng);
	if (err)
		goto out_free_zr;

	/* The planted model, std r^-1/4 per entry: U_i . V_j ~ variance 1. */
	U = malloc((size_t)o.rows * o.rank * sizeof(*U));
	V = malloc((size_t)o.cols * o.rank * sizeof(*V));
	cells = malloc(total * sizeof(*cells));
	if (!U || !V || !cells) {
		err = -ENOMEM;
		goto out_free;
	}
	std = pow((double)o.rank, -0.25);
	for (uint64_t k = 0; k < (uint64_t)o.rows * o.rank; k++)
		U[k] = (float)(std * rng_normal(&rng));
	for (uint64_t k = 0; k < (uint64_t)o.cols * o.rank; k++)
		V[k] = (float)(std * rng_normal(&rng));

	err = cellset_init(&cs, total);
	if (err)
		goto out_free;
	max_draws = 200 * total + 1000000;
	for (uint64_t k = 0; k < total; k++) {
		uint32_t i, j;
		const float *u, *w;
		double dot = 0;

		do {
			if (++draws > max_draws) {
				fprintf(stderr,
					"mf-gen: gave up after %" PRIu64
					" draws for %" PRIu64 " distinct cells:"
					" the Zipf heads are saturated; ask "
					"fewer cells, a larger matrix or "
					"flatter exponents\n",
					draws, k);
				err = -EAGAIN;
				goto out_free;
			}
			i = zipf_draw(&zr, &rng);
			j = zipf_draw(&zc, &rng);
		} while (!cellset_insert(&cs, (uint64_t)i * o.cols + j + 1));
		u = U + (size_t)i * o.rank;
		w = V + (size_t)j * o.rank;
		for (uint32_t r = 0; r < o.rank; r++)
			dot += (double)u[r] * w[r];
		cells[k].i = i;
		cells[k].j = j;
		cells[k].v = (float)(dot + o.sigma * rng_normal(&rng));
	}
	for (uint64_t k = total - 1; k > 0; k--) { /* train/test split */
		uint64_t j = rng_below(&rng, k + 1);
		struct cell t = cells[k];

		cells[k] = cells[j];
		cells[j] = t;
	}

	path = malloc(strlen(o.prefix) + 16);
	if (!path) {
		err = -ENOMEM;
		goto out_free;
	}
	sprintf(path, "%s.train.mm", o.prefix);
	err = write_mm(path, &o, cells, o.nnz, "training");
	if (err)
		goto out_free;
	sprintf(path, "%s.test.mm", o.prefix);
	err = write_mm(path, &o, cells + o.nnz, o.ntest, "test");
	if (err)
		goto out_free;
	printf("mf-gen: %u x %u, %" PRIu64 " train + %" PRIu64 " test cells "
	       "(%.2f draws per cell), rank %u, sigma %g, Zipf(%g) x Zipf(%g),"
	       " seed %" PRIu64 ": %s.{train,test}.mm in %.2f s\n",
	       o.rows, o.cols, o.nnz, o.ntest, (double)draws / (double)total,
	       o.rank, o.sigma, o.row_zipf, o.col_zipf, o.seed, o.prefix,
	       now_s() - t0);

out_free:
	free(path);
	free(cs.slot);
	free(cells);
	free(V);
	free(U);
	zipf_free(&zc);
out_free_zr:
	zipf_free(&zr);
out_nomem:
	if (err == -ENOMEM)
		fprintf(stderr, "mf-gen: out of memory\n");
	return err ? 1 : 0;
}
