/* dataset.h: labelled image datasets, found by name, served in mini-batches.
 *
 * A dataset holds N images of C x H x W uint8 pixels and N labels, from IDX files (MNIST,
 * Fashion-MNIST), the CIFAR-10 binary batches, or an image folder root/<class>/<file> of PNG
 * and JPEG files (decoded once, then kept in a decoded cache file). The labels are always in
 * memory. The pixels are either in memory too, or, in streaming mode (lb_dataset_opts.stream,
 * for the sources whose pixels sit uncompressed at fixed offsets in a file: the decoded cache
 * and the CIFAR-10 binary batches), left in their file and read sample by sample with pread,
 * so they live in the page cache instead of the process and a dataset larger than RAM works.
 * Batches are drawn through an lb_batcher: a seeded shuffle per epoch (or the stored order),
 * optional seeded augmentation (random crop with zero padding, horizontal flip) and conversion
 * to normalised float NCHW, written into a buffer the caller owns, so the training step
 * allocates nothing; both modes give bit-identical batches. An lb_prefetch prepares the next
 * batches on a background thread, giving the same batches.
 *
 *     lb_dataset train, test;  lb_error err = {0};
 *     if (lb_dataset_load("mnist", NULL, LB_SPLIT_TRAIN, &train, &err) != LB_OK) ...
 *     lb_batcher b;  lb_batcher_init(&b, &train, 64, true, 42, &err);  // seed 42
 *     for (int e = 0; e < epochs; e++) {
 *         lb_batcher_start_epoch(&b);                   // reshuffles
 *         while ((n = lb_batcher_next(&b, x, y)) > 0) { ... }  // x: 64*C*H*W floats, y: 64
 *         if (n < 0) ... lb_batcher_status(&b, &err)    // a streamed file could not be read
 *     }
 *     lb_batcher_free(&b);  lb_dataset_free(&train);
 */
#ifndef LB_DATASET_H
#define LB_DATASET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/rng.h"
#include "autograd/status.h"

#define LB_DATASET_MAX_CLASSES 1000
#define LB_CLASS_NAME_MAX      64   /* bytes per class name, with the terminating NUL */

typedef enum { LB_SPLIT_TRAIN = 0, LB_SPLIT_TEST = 1 } lb_split;

/* One file a streaming dataset reads pixels from: the pixels of sample first + k
 * (0 <= k < count) are the c*h*w bytes at offset + k * stride. */
typedef struct lb_dataset_file {
    int      fd;              /* opened read-only (O_CLOEXEC); pread only, so threads share it */
    int64_t  first, count;    /* the samples this file holds                                   */
    uint64_t offset, stride;  /* bytes                                                         */
    char     path[4096];      /* for messages                                                  */
} lb_dataset_file;

typedef struct lb_dataset {
    char     name[32];        /* "mnist", "fashion-mnist"                          */
    char     source[1024];    /* file (or folder) the images were read from        */
    int64_t  n;               /* number of samples                                 */
    int      c, h, w;         /* image geometry                                    */
    int      n_classes;       /* labels are in [0, n_classes)                      */
    uint8_t *images;          /* (n, c, h, w) raw pixels, or NULL when streaming     */
    int32_t *labels;          /* (n)                                               */
    float    mean[3], std[3]; /* per-channel normalisation of pixel/255            */
    char    *class_names;     /* n_classes * LB_CLASS_NAME_MAX bytes (image folders,
                                 CIFAR-10), or NULL: class i is the label number   */
    int64_t  n_skipped;       /* corrupt images skipped (lb_dataset_opts.skip_corrupt) */
    bool     from_cache;      /* pixels came from a decoded cache file              */
    /* Streaming (images == NULL): the pixels of sample i are sample file_base + i of the
     * files (lb_dataset_pixels reads them). A view (lb_calib_split) shares the files of the
     * dataset it was cut from with a larger file_base, and owns nothing. */
    lb_dataset_file *files;   /* n_files, malloc'ed, closed by lb_dataset_free, or NULL */
    int      n_files;
    int64_t  file_base;
} lb_dataset;

/* How image folders are read (lb_dataset_load_ex, lb_folder_load). Start from
 * lb_dataset_opts_default(); a zeroed struct is also valid (no cache, no log). */
typedef struct lb_dataset_opts {
    const char *cache_dir;    /* decoded caches and unpacked archives; NULL: $LOWBIT_CACHE,
                                 else $HOME/.cache/lowbit                           */
    bool        use_cache;    /* read and write <cache_dir>/<name>-<split>.lbds        */
    bool        skip_corrupt; /* skip (and count in n_skipped) images that fail to
                                 decode instead of failing the load                  */
    bool        resize;       /* resize images whose size differs from the expected
                                 size (bilinear, half-pixel centres) instead of failing */
    int         channels;     /* 0: as the first image (1 gray, 3 colour); 1 or 3      */
    int         height, width;/* 0: as the first image; else the expected size        */
    FILE       *log;          /* progress of unpacking and decoding, or NULL           */
    bool        stream;       /* leave the pixels in their file and read each sample with
                                 pread (decoded caches, CIFAR-10 binary batches; other
                                 sources, and image folders without a cache file, are
                                 read into memory anyway)                             */
} lb_dataset_opts;

/* use_cache and stream on, log NULL, everything else off/0. */
lb_dataset_opts lb_dataset_opts_default(void);

/* Reads an IDX image file and an IDX label file (each gzip-compressed or plain; zlib reads
 * both) into ds. Validates magic numbers (0x00000803 images, 0x00000801 labels), dims
 * (1..4096 rows/cols), counts that agree, and that the files hold as many bytes as their
 * headers claim, before allocating more than what was actually read. Errors name the file.
 * Also accepted: labels stored as big-endian int32 (magic 0x00000C01, IDX type 0x0C), for
 * datasets with more than 256 classes. Every label must be in 0..LB_DATASET_MAX_CLASSES-1;
 * n_classes = largest label + 1, c = 1, name is left empty, source = images_path, and the
 * normalisation is the identity (mean 0, std 1). Extra bytes after the data are an error.
 * Status: LB_ERR_IO (cannot open/read; strerror), LB_ERR_FORMAT (malformed), LB_ERR_NOMEM.
 * ds is overwritten (not freed) first and stays zeroed on failure; nothing leaks. On success
 * the caller owns ds's buffers and releases them with lb_dataset_free. */
lb_status lb_idx_load(const char *images_path, const char *labels_path, lb_dataset *ds,
                      lb_error *err);

/* Finds and loads a dataset by name ("mnist", "fashion-mnist", alias "fashion"; the names of
 * lb_dataset_load_ex too, with lb_dataset_opts_default(), so silently). A non-NULL
 * data_dir is the only root searched: an explicit choice never silently falls back. Otherwise
 * the roots are, in order: $LOWBIT_DATA, ../shared/datasets relative to the working
 * directory, LB_SOURCE_DIR/../shared/datasets (the source tree), <executable's dir>/../../
 * shared/datasets and <executable's dir>/../shared/datasets, and /usr/share/datasets (Debian's
 * dataset-fashion-mnist). Within a root, files are looked for as <root>/<name>/<file> and
 * <root>/<file>, plain or .gz, with <file> = {train,t10k}-{images-idx3,labels-idx1}-ubyte;
 * images and labels must sit in the same folder. Sets name, source (the images file) and the
 * standard normalisation (MNIST 0.1307/0.3081, Fashion-MNIST 0.2860/0.3530).
 * Status: LB_ERR_ARG (unknown name or split); LB_ERR_IO when nothing was found, with a message
 * listing the roots (cut to fit) and a hint; otherwise as lb_idx_load. */
lb_status lb_dataset_load(const char *name, const char *data_dir, lb_split split, lb_dataset *ds,
                          lb_error *err);

/* lb_dataset_load with options, and more names:
 *   "cifar10" (alias "cifar-10"): the official binary batches (lb_cifar10_bin_load) when a root
 *     holds cifar-10-batches-bin/ (or cifar10/cifar-10-batches-bin/, or data_batch_1.bin
 *     itself); otherwise <root>/cifar10-jpeg.tar.gz, unpacked once (lb_archive_unpack) into
 *     <cache_dir>/cifar10-jpeg and read as an image folder. Normalisation: the standard
 *     CIFAR-10 training-set mean 0.4914,0.4822,0.4465 and std 0.2470,0.2435,0.2616.
 *   "mnist-png": <root>/mnist-png.tar.gz the same way (or an unpacked <root>/mnist-png/),
 *     with MNIST's normalisation, so results match the IDX files.
 *   "folder": data_dir is an image folder with train/ and test/ sub-folders.
 *   any name containing '/' or naming an existing directory: that image folder, as "folder".
 * Image folders of unknown origin are normalised by the per-channel mean and std of their
 * train/ split (loading the test split reads train/ too, from its cache after the first time;
 * without a readable train/, the test split's own statistics are used).
 * The roots are those of lb_dataset_load. opts may be NULL (lb_dataset_opts_default()).
 * Status: as lb_dataset_load, lb_archive_unpack, lb_cifar10_bin_load and lb_folder_load. */
lb_status lb_dataset_load_ex(const char *name, const char *data_dir, lb_split split,
                             const lb_dataset_opts *opts, lb_dataset *ds, lb_error *err);

/* Reads the official CIFAR-10 binary batches from dir: data_batch_1.bin .. data_batch_5.bin
 * (train) or test_batch.bin (test), each a sequence of 3073-byte records (1 label byte 0..9,
 * then 1024 R, 1024 G, 1024 B bytes, rows top to bottom). Every file's size is checked to be a
 * positive multiple of 3073 before anything is allocated; labels > 9 are errors. Sets
 * c=3, h=w=32, n_classes=10, the class names, name "cifar10" and the standard normalisation.
 * With stream, every file is read once for its labels and then kept open, one descriptor per
 * file (ds->files, offset 1, stride 3073), and the pixels are left in the files.
 * Status: LB_ERR_IO (missing or unreadable file), LB_ERR_FORMAT (empty, truncated, bad label),
 * LB_ERR_NOMEM; the message names the file. ds is zeroed on failure. */
lb_status lb_cifar10_bin_load(const char *dir, lb_split split, bool stream, lb_dataset *ds,
                              lb_error *err);

/* Loads the image folder root/<class>/<file>: classes are the sub-folders (names not starting
 * with '.'), sorted by strcmp and numbered from 0; the files of each class are the regular
 * files ending in .png, .jpg or .jpeg (any case), sorted by strcmp; other files are ignored.
 * The format is told by the file's first bytes. PNG: any bit depth and colour type, converted
 * by libpng to 8 bits (16-bit keeps the high byte, palette and low-bit gray are expanded,
 * alpha is dropped). JPEG: gray or colour, via libjpeg-turbo; a file libjpeg only warns about
 * (cut short, damaged data) counts as corrupt. Channels follow opts->channels or the first
 * image (gray images become RGB by copying, colour becomes gray by 0.299R+0.587G+0.114B);
 * the size follows opts->height/width or the first image. An image of another size is an
 * error naming the file unless opts->resize. A corrupt image is an error naming the file, or
 * with opts->skip_corrupt is skipped and counted in ds->n_skipped.
 * With opts->use_cache, the decoded dataset is kept in <cache_dir>/<cache_name>.lbds together
 * with the folder's file count, total size and newest modification time and the decoding
 * options; a later load with the same folder state reads the cache (ds->from_cache) instead
 * of decoding. A stale, damaged or foreign cache is ignored and rewritten. Writing the cache
 * is best effort: failing to write it is reported on opts->log, not as an error.
 * With opts->stream and a valid (or just written) cache, the pixels stay in the cache file:
 * opening it checks the header, the file's size against it, the CRC (one sequential read
 * through the page cache, with a small buffer) and the labels, then keeps the file open.
 * name is copied into ds->name; the normalisation is the identity (callers set it).
 * Status: LB_ERR_IO (missing folder, unreadable file), LB_ERR_FORMAT (no classes, no images,
 * corrupt image, wrong size, too many classes), LB_ERR_NOMEM. ds is zeroed on failure. */
lb_status lb_folder_load(const char *root, const char *name, const char *cache_name,
                         const lb_dataset_opts *opts, lb_dataset *ds, lb_error *err);

/* Unpacks the tar archive (plain or gzip/bzip2/xz, read by libarchive) into the folder dest,
 * once: when dest exists with a stamp file recording this archive's size and mtime, nothing is
 * done. Otherwise everything is written into a fresh dest.tmp-<pid> folder, the stamp is
 * written last, and the folder is renamed to dest, so an interrupted unpack is never used and
 * is redone next time (an outdated dest is removed first). Only regular files and folders are
 * accepted: an entry with an absolute path, a ".." component, or of another type (symbolic
 * or hard link, device) rejects the archive. Progress goes to log as
 * "unpacking NAME: k/N files" (N from a first listing pass), or nowhere when log is NULL.
 * Status: LB_ERR_IO (cannot read the archive or write dest), LB_ERR_FORMAT (not a tar archive,
 * damaged, or a rejected entry, named). On failure the temporary folder is removed. */
lb_status lb_archive_unpack(const char *archive, const char *dest, FILE *log, lb_error *err);

/* The cache folder: opts->cache_dir, else $LOWBIT_CACHE, else $HOME/.cache/lowbit; written
 * into out (created with its parents). LB_ERR_IO when it cannot be created. */
lb_status lb_cache_dir(const lb_dataset_opts *opts, char *out, size_t out_size, lb_error *err);

/* Frees the pixel and label buffers and closes the files of a streaming dataset; accepts a
 * zeroed or already freed dataset. Never call it on a view (lb_calib_split). */
void lb_dataset_free(lb_dataset *ds);

/* True when the pixels are read from files (ds->images is NULL). */
bool lb_dataset_streams(const lb_dataset *ds);

/* The raw pixels of sample i, c*h*w bytes (c, h, w) planar: a pointer into ds->images, or,
 * when streaming, scratch (c*h*w bytes, owned by the caller) after pread-ing them into it.
 * Allocates nothing; safe from several threads at once when each has its own scratch. NULL on
 * a read error or a short read (a file truncated after it was opened), with LB_ERR_IO in err
 * naming the file, the sample and the offset. i out of range is a bug (LB_ASSERT). */
const uint8_t *lb_dataset_pixels(const lb_dataset *ds, int64_t i, uint8_t *scratch,
                                 lb_error *err);

/* Writes sample i as normalised floats (c*h*w values) into out:
 * out[ch*h*w + k] = (pixel / 255 - mean[ch]) / std[ch]. When streaming, the raw bytes are
 * read into the last quarter of out itself and converted front to back (out[k] never
 * overwrites a byte not yet converted), so no other buffer is needed. Errors as
 * lb_dataset_pixels (out is then undefined). */
lb_status lb_dataset_get(const lb_dataset *ds, int64_t i, float *out, lb_error *err);

/* Augmentation applied by the batcher to each sample it serves. */
typedef enum {
    LB_AUGMENT_NONE = 0,
    LB_AUGMENT_CROP_FLIP = 1, /* pad 4 pixels of raw value 0 on every side, take a random
                                 h x w crop, then flip left-right with probability 1/2
                                 (PyTorch's RandomCrop(size, padding=4) and
                                 RandomHorizontalFlip before Normalize)                 */
} lb_augment;

/* Parses "none" or "crop-flip"; LB_ERR_ARG otherwise. */
lb_status lb_augment_parse(const char *s, lb_augment *out, lb_error *err);
const char *lb_augment_name(lb_augment a);

typedef struct lb_batcher {
    const lb_dataset *ds;
    int64_t  batch;
    bool     shuffle;
    bool     drop_last;    /* skip a final partial batch (training)                  */
    lb_rng   rng;
    int64_t *order;        /* (ds->n) permutation of this epoch                      */
    int64_t  pos;          /* next index into order                                  */
    int64_t  epoch;        /* epochs started so far                                  */
    lb_augment augment;    /* LB_AUGMENT_NONE unless set after init                  */
    int      cutout;       /* > 0: after augmenting, one cutout x cutout square per
                              sample set to 0 (lb_cutout_pixels); 0 unless set       */
    uint64_t aug_seed;     /* augmentation draws are a function of (aug_seed, epoch,
                              position in the epoch): no state to save for resuming, and
                              the same on any thread                                  */
    uint8_t *pix;          /* (c*h*w) read buffer of a streaming dataset, or NULL     */
    lb_error err;          /* sticky: the first read error (status LB_OK while none)   */
} lb_batcher;

/* Prepares batching of ds; allocates the order array (and, when ds streams, one sample's
 * read buffer) once. drop_last starts false (set the
 * field to skip a final partial batch). ds must outlive b. LB_ERR_ARG for batch < 1 or an
 * empty dataset, LB_ERR_NOMEM. The same seed gives the same order in every epoch. */
lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int64_t batch, bool shuffle,
                          uint64_t seed, lb_error *err);
/* Starts an epoch: reshuffles (when shuffling) from the batcher's rng. */
void lb_batcher_start_epoch(lb_batcher *b);
/* Fills x (batch*c*h*w floats) and y (batch labels) with the next batch of this epoch and
 * returns its size, 0 at the end of the epoch. Allocates nothing. The first call starts
 * epoch 1 itself if lb_batcher_start_epoch was never called; after the end of an epoch it
 * keeps returning 0 until the next lb_batcher_start_epoch.
 * Returns -1 when a sample of a streaming dataset cannot be read (lb_dataset_pixels): the
 * error is kept in b->err (lb_batcher_status) and every later call returns -1 too, so a
 * caller's `while ((n = lb_batcher_next(...)) > 0)` ends and it can check once. */
int64_t lb_batcher_next(lb_batcher *b, float *x, int32_t *y);
/* LB_OK, or the sticky read error of lb_batcher_next, copied into err. */
lb_status lb_batcher_status(const lb_batcher *b, lb_error *err);
/* Number of batches per epoch (honours drop_last). */
int64_t lb_batcher_count(const lb_batcher *b);
/* Frees the order array; accepts a zeroed or already freed batcher. */
void lb_batcher_free(lb_batcher *b);

/* Writes the raw sample pix (c*h*w bytes of ds's geometry, from lb_dataset_pixels) into out
 * (c*h*w floats) normalised as lb_dataset_get does, augmented by a: the crop offsets dy, dx
 * in [0, 8] and the flip are drawn from r (dy, then dx, then the flip); LB_AUGMENT_NONE
 * draws nothing (r may be NULL). No I/O, cannot fail. */
/* Cutout (DeVries and Taylor, 2017): draws a centre (cy, cx) uniformly over the h x w image
 * from r and sets out[ch][y][x] = 0 (the channel's mean after normalisation) for every
 * channel where |y - cy| and |x - cx| put (y, x) in the size x size square
 * [cy - size/2, cy - size/2 + size) x [cx - size/2, cx - size/2 + size), clipped at the
 * border (so a square near an edge covers less). out holds one normalised sample. */
void lb_cutout_pixels(const lb_dataset *ds, int size, lb_rng *r, float *out);

void lb_augment_pixels(const lb_dataset *ds, const uint8_t *pix, lb_augment a, lb_rng *r,
                       float *out);

/* Background batch preparation. lb_prefetch_new starts one thread that fills two batch
 * buffers from b (double buffering) while the caller trains on the previous batch; the
 * batches are exactly those lb_batcher_next would give, in the same order. With
 * threaded=false no thread is started and lb_prefetch_next calls lb_batcher_next directly,
 * the same code path for callers. While a prefetch exists, only it may touch b.
 *
 *     lb_prefetch *p = lb_prefetch_new(&b, true, &err);
 *     lb_prefetch_start_epoch(p, 0);
 *     while ((n = lb_prefetch_next(p, x, y)) > 0) { ... }
 *     if (n < 0) lb_prefetch_status(p, &err);       // the read error, naming the file
 *     lb_prefetch_free(p);
 */
typedef struct lb_prefetch lb_prefetch;

/* Allocates the two buffers (batch*c*h*w floats and batch labels each) and starts the thread.
 * NULL on failure (LB_ERR_NOMEM, or LB_ERR_IO when no thread can be started) with err set. */
lb_prefetch *lb_prefetch_new(lb_batcher *b, bool threaded, lb_error *err);
/* Waits for the thread to finish the batch it is preparing, starts the next epoch of b
 * (lb_batcher_start_epoch), skips the first `skip` samples (resuming mid-epoch), and lets
 * the thread prepare this epoch's batches. */
void lb_prefetch_start_epoch(lb_prefetch *p, int64_t skip);
/* Copies the next prepared batch into x and y and returns its size (0 at the end of the epoch,
 * -1 after a read error, as lb_batcher_next), waiting if it is not ready yet. Allocates
 * nothing. */
int64_t lb_prefetch_next(lb_prefetch *p, float *x, int32_t *y);
/* LB_OK, or the batcher's sticky read error (lb_batcher_status), copied into err. */
lb_status lb_prefetch_status(lb_prefetch *p, lb_error *err);
/* Stops and joins the thread, frees the buffers; accepts NULL. b is untouched. */
void lb_prefetch_free(lb_prefetch *p);

#endif
