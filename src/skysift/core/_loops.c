/*
 * skysift.core._loops: the per-source pixel loops of detection and photometry that NumPy can
 * only run as a dozen small array operations per source (boxes of 500-8,000 pixels, about a
 * thousand sources an image), compiled.
 *
 *   paste(image, out, x0, x1, y0, y1, ox, oy, margin)
 *       detection._BoxMosaic.gather's copy: each box [y0, y1] x [x0, x1] (inclusive) of the
 *       image with ``margin`` more around it (within the image), into out (float32) with the
 *       box's first pixel at (oy, ox);
 *   own_pixels(segmap, labels, x0, x1, y0, y1, out_counts, out_rows, out_cols)
 *       ... and the pixels of each box labelled labels[k], in np.nonzero's order (box
 *       coordinates): their count per box, and (given room) the pixels;
 *   foreign(segmap, companions, own, cx, cy, half, out)
 *       what photometry._foreign finds in each source's box: nothing (0), another
 *       source's pixels (1), a companion in the source's own isophote (2);
 *   fill(data, error, mask, segmap, companions, own, x0, x1, y0, y1, ox, oy, sx, sy,
 *        out_data, out_error, out_mask, out_neighbour, out_replaced)
 *       each source's photometry.corrected_cutout of the box [y0, y1) x [x0, x1),
 *       written into a mosaic at (oy, ox): other sources' pixels (and companions')
 *       take the value and error of the pixel opposite them through (sx, sy);
 *   annulus_sums(data, error, flags, x, y, rin, rout, out_sum, out_error, out_flag, out_count)
 *       the local pedestal's annuli in one pass: sep.sum_circann(data, x, y, rin, rout,
 *       err=error, mask=flags, subpix=1) (its box, pixel tests, sums, mask correction and
 *       flags, replicated) and how many flagged pixels each annulus holds, as
 *       sep.sum_circann(flags, x, y, rin, rout, subpix=1) counts them;
 *   flux_radius(data, mask, x, y, rmax, normflux, frac, subpix, out_radius, out_flag)
 *       the half-light radius's sep.flux_radius(data, x, y, rmax, frac, normflux=normflux,
 *       mask=mask, subpix=subpix): its growth curve and inverse, replicated.
 *
 * Each gives exactly what the NumPy or SEP call gives (tests/core/test_loops.py compares
 * them on random inputs); photometry uses these when this module was built (an optional
 * extension: without a compiler, the NumPy and SEP calls do the work).
 *
 * Arrays come through the buffer protocol with any strides (an error map may be a
 * broadcast scalar), in native byte order: images float32 or float64, labels any
 * integer type, masks bool or uint8. The per-source arrays are C-contiguous int64 or
 * float64 (the Python side makes them so). No NumPy headers: nothing but Python's API.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* A 2-D array seen through its buffer: base pointer, strides, shape, element kind. */
typedef struct {
    Py_buffer view;
    char kind;  /* the element's struct format character, byte order stripped */
    int held;
} Image;

static const char *element_kind(const char *format)
{
    if (format == NULL)
        return "B";
    while (*format == '@' || *format == '=' || (*format == '<' && PY_LITTLE_ENDIAN))
        format++;
    return format;
}

/* The native size of an element of this struct format letter (0: not one these loops read). */
static Py_ssize_t native_size(char kind)
{
    switch (kind) {
    case '?': case 'b': case 'B': return 1;
    case 'h': case 'H': return sizeof(short);
    case 'i': case 'I': return sizeof(int);
    case 'l': case 'L': return sizeof(long);
    case 'q': case 'Q': return sizeof(long long);
    case 'f': return sizeof(float);
    case 'd': return sizeof(double);
    default: return 0;
    }
}

static int image_get(PyObject *object, Image *image, int writable, const char *name, const char *kinds)
{
    int flags = PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0);
    image->held = 0;
    if (PyObject_GetBuffer(object, &image->view, flags) < 0)
        return -1;
    image->held = 1;
    const char *kind = element_kind(image->view.format);
    if (image->view.ndim != 2 || kind[0] == '\0' || kind[1] != '\0' || strchr(kinds, kind[0]) == NULL
        || image->view.itemsize != native_size(kind[0])) {
        PyErr_Format(PyExc_TypeError, "%s: a 2-D array of native %s elements expected", name, kinds);
        return -1;
    }
    image->kind = kind[0];
    return 0;
}

static void image_release(Image *image)
{
    if (image->held)
        PyBuffer_Release(&image->view);
    image->held = 0;
}

static int same_shape(const Image *a, const Image *b, const char *name)
{
    if (a->view.shape[0] != b->view.shape[0] || a->view.shape[1] != b->view.shape[1]) {
        PyErr_Format(PyExc_ValueError, "%s: not the shape of the array it goes with", name);
        return -1;
    }
    return 0;
}

static inline char *at(const Image *image, Py_ssize_t y, Py_ssize_t x)
{
    return (char *)image->view.buf + y * image->view.strides[0] + x * image->view.strides[1];
}

static inline double read_value(const Image *image, Py_ssize_t y, Py_ssize_t x)
{
    const char *p = at(image, y, x);
    return image->kind == 'f' ? (double)*(const float *)p : *(const double *)p;
}

static inline long long read_label(const Image *image, Py_ssize_t y, Py_ssize_t x)
{
    const char *p = at(image, y, x);
    switch (image->kind) {
    case 'b': return *(const signed char *)p;
    case 'B': return *(const unsigned char *)p;
    case 'h': return *(const short *)p;
    case 'H': return *(const unsigned short *)p;
    case 'i': return *(const int *)p;
    case 'I': return *(const unsigned int *)p;
    case 'l': return *(const long *)p;
    case 'L': return (long long)*(const unsigned long *)p;
    case 'q': return *(const long long *)p;
    default: return (long long)*(const unsigned long long *)p;
    }
}

static inline int read_flag(const Image *image, Py_ssize_t y, Py_ssize_t x)
{
    return *(const unsigned char *)at(image, y, x) != 0;
}

/* A 1-D C-contiguous per-source array: int64 ('l', also read from 'q'), float64 ('d'), int8
 * ('b') or int16 ('h'); the outputs writable. */
typedef struct {
    Py_buffer view;
    int held;
} Column;

static const char *column_type(char kind)
{
    switch (kind) {
    case 'l': return "int64";
    case 'd': return "float64";
    case 'b': return "int8";
    default: return "int16";
    }
}

static int column_get(PyObject *object, Column *column, char kind, int writable, Py_ssize_t n, const char *name)
{
    column->held = 0;
    if (PyObject_GetBuffer(object, &column->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0))
        < 0)
        return -1;
    column->held = 1;
    const char *format = element_kind(column->view.format);
    int ok = format[0] != '\0' && format[1] == '\0'
             && (format[0] == kind || (kind == 'l' && format[0] == 'q'))
             && column->view.itemsize == (kind == 'l' ? 8 : native_size(kind));
    if (!ok || column->view.ndim != 1 || (n >= 0 && column->view.shape[0] != n)) {
        PyErr_Format(PyExc_TypeError, "%s: a contiguous 1-D %s array of the sources' length expected", name,
                     column_type(kind));
        return -1;
    }
    return 0;
}

static void column_release(Column *column)
{
    if (column->held)
        PyBuffer_Release(&column->view);
    column->held = 0;
}

/* Python's int(v) for the box bounds of photometry._foreign, clamped to a range a Py_ssize_t holds. */
static inline Py_ssize_t truncated(double v)
{
    if (v > 4e18) return (Py_ssize_t)4e18;
    if (v < -4e18) return (Py_ssize_t)-4e18;
    return (Py_ssize_t)v;  /* C truncates towards zero, as int() does */
}

enum { FOREIGN_NONE = 0, FOREIGN_SOURCE = 1, FOREIGN_COMPANION = 2 };

/* Row y's labels c0 .. c1 - 1 of foreign_one's box, each read as LABEL: a companion on the
 * source's own pixel ends the search; another source's pixel is noted (and ends it without companions). */
#define FOREIGN_ROW(LABEL)                                                             \
    for (Py_ssize_t x = c0; x < c1; x++) {                                             \
        long long label = (LABEL);                                                     \
        if (label == own) {                                                            \
            if (companion_row != NULL && companion_row[x * companion_step])            \
                return FOREIGN_COMPANION;                                              \
        } else if (label != 0) {                                                       \
            if (companion_row == NULL)                                                 \
                return FOREIGN_SOURCE;                                                 \
            other = 1;                                                                 \
        }                                                                              \
    }
/* The label of type T at column x of the row at ``labels``. */
#define TYPED_LABEL(T, x) ((long long)*(const T *)(labels + (x) * label_step))

static int foreign_one(const Image *segmap, const Image *companions, long long own, double cx, double cy, double half)
{
    if (!isfinite(cx) || !isfinite(cy) || !isfinite(half))
        return FOREIGN_SOURCE;
    Py_ssize_t ny = segmap->view.shape[0], nx = segmap->view.shape[1];
    Py_ssize_t r0 = truncated(cy - half), r1 = truncated(cy + half) + 2;
    Py_ssize_t c0 = truncated(cx - half), c1 = truncated(cx + half) + 2;
    r0 = r0 < 0 ? 0 : r0; c0 = c0 < 0 ? 0 : c0;
    r1 = r1 > ny ? ny : r1; c1 = c1 > nx ? nx : c1;
    Py_ssize_t label_step = segmap->view.strides[1];
    Py_ssize_t companion_step = companions != NULL ? companions->view.strides[1] : 0;
    int other = 0;
    for (Py_ssize_t y = r0; y < r1; y++) {
        const char *labels = at(segmap, y, 0);
        const unsigned char *companion_row = companions != NULL ? (const unsigned char *)at(companions, y, 0) : NULL;
        switch (segmap->kind) {  /* the label's type chosen once a row, not at each pixel */
        case 'h': FOREIGN_ROW(TYPED_LABEL(short, x)) break;
        case 'i': FOREIGN_ROW(TYPED_LABEL(int, x)) break;
        case 'l': FOREIGN_ROW(TYPED_LABEL(long, x)) break;
        default: FOREIGN_ROW(read_label(segmap, y, x))
        }
    }
    return other ? FOREIGN_SOURCE : FOREIGN_NONE;
}

static PyObject *foreign(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *segmap_o, *companions_o, *own_o, *cx_o, *cy_o, *half_o, *out_o;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &segmap_o, &companions_o, &own_o, &cx_o, &cy_o, &half_o, &out_o))
        return NULL;
    Image segmap = {0}, companions = {0};
    Column own = {0}, cx = {0}, cy = {0}, half = {0}, out = {0};
    PyObject *result = NULL;
    if (image_get(segmap_o, &segmap, 0, "segmap", "bBhHiIlLqQ") < 0)
        goto done;
    if (companions_o != Py_None) {
        if (image_get(companions_o, &companions, 0, "companions", "?") < 0
            || same_shape(&segmap, &companions, "companions") < 0)
            goto done;
    }
    if (column_get(own_o, &own, 'l', 0, -1, "own") < 0)
        goto done;
    Py_ssize_t n = own.view.shape[0];
    if (column_get(cx_o, &cx, 'd', 0, n, "cx") < 0 || column_get(cy_o, &cy, 'd', 0, n, "cy") < 0
        || column_get(half_o, &half, 'd', 0, n, "half") < 0 || column_get(out_o, &out, 'b', 1, n, "out") < 0)
        goto done;
    const int64_t *owns = own.view.buf;
    const double *xs = cx.view.buf, *ys = cy.view.buf, *halves = half.view.buf;
    signed char *kinds = out.view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        kinds[i] = (signed char)foreign_one(&segmap, companions.held ? &companions : NULL, owns[i], xs[i], ys[i],
                                            halves[i]);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    image_release(&segmap);
    image_release(&companions);
    column_release(&own);
    column_release(&cx);
    column_release(&cy);
    column_release(&half);
    column_release(&out);
    return result;
}

/* The source inputs and mosaic outputs of fill(), with the checks that make every access in bounds. */
typedef struct {
    Image data, error, mask, segmap, companions;
    Image out_data, out_error, out_mask, out_neighbour, out_replaced;
    Column own, x0, x1, y0, y1, ox, oy, sx, sy;
} Fill;

static void fill_release(Fill *f)
{
    Image *images[] = {&f->data, &f->error, &f->mask, &f->segmap, &f->companions,
                       &f->out_data, &f->out_error, &f->out_mask, &f->out_neighbour, &f->out_replaced};
    for (size_t k = 0; k < sizeof images / sizeof *images; k++)
        image_release(images[k]);
    Column *columns[] = {&f->own, &f->x0, &f->x1, &f->y0, &f->y1, &f->ox, &f->oy, &f->sx, &f->sy};
    for (size_t k = 0; k < sizeof columns / sizeof *columns; k++)
        column_release(columns[k]);
}

/* Half to even, as np.rint (and C's rint in the default rounding mode), inline: |v| < 2^51
 * rounds by adding and taking away 1.5 * 2^52; beyond, a double is already whole (or NaN). */
static inline double round_half_even(double v)
{
    const double shift = 6755399441055744.0;
    return fabs(v) < 2251799813685248.0 ? (v + shift) - shift : v;
}

/* A replaced pixel (y, x): the value and error of the pixel opposite it through (sx, sy), if
 * that is on the image, of no other source, no companion and not masked; else value 0 and the
 * pixel's own error (already in place). */
static void mirror_pixel(const Fill *f, long long own, Py_ssize_t y, Py_ssize_t x, double sx, double sy, char *value,
                         char *error)
{
    Py_ssize_t ny = f->data.view.shape[0], nx = f->data.view.shape[1];
    double oyf = round_half_even(2.0 * sy - (double)y), oxf = round_half_even(2.0 * sx - (double)x);
    /* compared as doubles first: a centre far off (or NaN) converts to no index */
    if (oxf >= 0.0 && oxf < (double)nx && oyf >= 0.0 && oyf < (double)ny) {
        Py_ssize_t oy = (Py_ssize_t)oyf, ox = (Py_ssize_t)oxf;
        long long opposite = read_label(&f->segmap, oy, ox);
        if ((opposite == 0 || opposite == own) && !(f->companions.held && read_flag(&f->companions, oy, ox))
            && !(f->mask.held && read_flag(&f->mask, oy, ox))) {
            *(float *)value = (float)read_value(&f->data, oy, ox);
            *(float *)error = (float)read_value(&f->error, oy, ox);
            return;
        }
    }
    *(float *)value = 0.0f;
}

/* Row y's pixels x0 .. x0 + width - 1 of an image (float32 or float64) into float32 at out, step apart. */
static void copy_values(const Image *image, Py_ssize_t y, Py_ssize_t x0, Py_ssize_t width, char *out, Py_ssize_t step)
{
    const char *in = at(image, y, x0);
    Py_ssize_t stride = image->view.strides[1];
    if (image->kind == 'f' && stride == (Py_ssize_t)sizeof(float) && step == (Py_ssize_t)sizeof(float)) {
        memcpy(out, in, (size_t)width * sizeof(float));
    } else if (image->kind == 'f') {
        for (Py_ssize_t k = 0; k < width; k++)
            *(float *)(out + k * step) = *(const float *)(in + k * stride);
    } else {
        for (Py_ssize_t k = 0; k < width; k++)
            *(float *)(out + k * step) = (float)*(const double *)(in + k * stride);
    }
}

/* Row y's labels x0 .. x0 + width - 1, each read as LABEL (k along the row): neighbour and
 * replaced flags, and the mirror for replaced pixels. */
#define LABEL_ROW(LABEL)                                                                                          \
    for (Py_ssize_t k = 0; k < width; k++) {                                                                      \
        long long label = (LABEL);                                                                                \
        unsigned char neighbour = label != 0 && label != own;                                                     \
        unsigned char replaced = neighbour || (companions != NULL && label == own && companions[k * companion_step]); \
        out_neighbour[k * neighbour_step] = neighbour;                                                            \
        out_replaced[k * replaced_step] = replaced;                                                               \
        if (replaced)                                                                                             \
            mirror_pixel(f, own, y, x0 + k, sx, sy, out_data + k * data_step, out_error + k * error_step);        \
    }

/* One cut-out: the box [y0, y1) x [x0, x1) of the image into the mosaic at (oy, ox). */
static void fill_one(const Fill *f, long long own, Py_ssize_t x0, Py_ssize_t x1, Py_ssize_t y0, Py_ssize_t y1,
                     Py_ssize_t ox, Py_ssize_t oy, double sx, double sy)
{
    Py_ssize_t width = x1 - x0;
    if (width <= 0)
        return;
    Py_ssize_t data_step = f->out_data.view.strides[1], error_step = f->out_error.view.strides[1];
    Py_ssize_t neighbour_step = f->out_neighbour.view.strides[1], replaced_step = f->out_replaced.view.strides[1];
    Py_ssize_t label_step = f->segmap.view.strides[1];
    Py_ssize_t companion_step = f->companions.held ? f->companions.view.strides[1] : 0;
    for (Py_ssize_t y = y0; y < y1; y++) {
        Py_ssize_t row = oy + (y - y0);
        char *out_data = at(&f->out_data, row, ox), *out_error = at(&f->out_error, row, ox);
        unsigned char *out_neighbour = (unsigned char *)at(&f->out_neighbour, row, ox);
        unsigned char *out_replaced = (unsigned char *)at(&f->out_replaced, row, ox);
        copy_values(&f->data, y, x0, width, out_data, data_step);
        copy_values(&f->error, y, x0, width, out_error, error_step);
        if (f->mask.held) {
            const char *mask = at(&f->mask, y, x0);
            char *out_mask = at(&f->out_mask, row, ox);
            Py_ssize_t mask_step = f->mask.view.strides[1], out_mask_step = f->out_mask.view.strides[1];
            for (Py_ssize_t k = 0; k < width; k++)
                out_mask[k * out_mask_step] = mask[k * mask_step] != 0;
        }
        const char *labels = at(&f->segmap, y, x0);
        const unsigned char *companions = f->companions.held ? (const unsigned char *)at(&f->companions, y, x0) : NULL;
        switch (f->segmap.kind) {  /* the label's type chosen once a row, not at each pixel */
        case 'h': LABEL_ROW(TYPED_LABEL(short, k)) break;
        case 'i': LABEL_ROW(TYPED_LABEL(int, k)) break;
        case 'l': LABEL_ROW(TYPED_LABEL(long, k)) break;
        default: LABEL_ROW(read_label(&f->segmap, y, x0 + k))
        }
    }
}

static PyObject *fill(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[19];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16], &o[17], &o[18]))
        return NULL;
    Fill f;
    memset(&f, 0, sizeof f);
    PyObject *result = NULL;
    if (image_get(o[0], &f.data, 0, "data", "fd") < 0 || image_get(o[1], &f.error, 0, "error", "fd") < 0
        || same_shape(&f.data, &f.error, "error") < 0)
        goto done;
    if (o[2] != Py_None && (image_get(o[2], &f.mask, 0, "mask", "?") < 0 || same_shape(&f.data, &f.mask, "mask") < 0))
        goto done;
    if (image_get(o[3], &f.segmap, 0, "segmap", "bBhHiIlLqQ") < 0 || same_shape(&f.data, &f.segmap, "segmap") < 0)
        goto done;
    if (o[4] != Py_None
        && (image_get(o[4], &f.companions, 0, "companions", "?") < 0
            || same_shape(&f.data, &f.companions, "companions") < 0))
        goto done;
    if (column_get(o[5], &f.own, 'l', 0, -1, "own") < 0)
        goto done;
    Py_ssize_t n = f.own.view.shape[0];
    Column *ints[] = {&f.x0, &f.x1, &f.y0, &f.y1, &f.ox, &f.oy};
    const char *int_names[] = {"x0", "x1", "y0", "y1", "ox", "oy"};
    for (int k = 0; k < 6; k++)
        if (column_get(o[6 + k], ints[k], 'l', 0, n, int_names[k]) < 0)
            goto done;
    if (column_get(o[12], &f.sx, 'd', 0, n, "sx") < 0 || column_get(o[13], &f.sy, 'd', 0, n, "sy") < 0)
        goto done;
    if (image_get(o[14], &f.out_data, 1, "out_data", "f") < 0 || image_get(o[15], &f.out_error, 1, "out_error", "f") < 0
        || same_shape(&f.out_data, &f.out_error, "out_error") < 0)
        goto done;
    if ((o[16] == Py_None) != (o[2] == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "out_mask: given exactly when mask is");
        goto done;
    }
    if (o[16] != Py_None
        && (image_get(o[16], &f.out_mask, 1, "out_mask", "?") < 0 || same_shape(&f.out_data, &f.out_mask, "out_mask") < 0))
        goto done;
    if (image_get(o[17], &f.out_neighbour, 1, "out_neighbour", "?") < 0
        || same_shape(&f.out_data, &f.out_neighbour, "out_neighbour") < 0
        || image_get(o[18], &f.out_replaced, 1, "out_replaced", "?") < 0
        || same_shape(&f.out_data, &f.out_replaced, "out_replaced") < 0)
        goto done;
    const int64_t *own = f.own.view.buf, *x0 = f.x0.view.buf, *x1 = f.x1.view.buf, *y0 = f.y0.view.buf,
                  *y1 = f.y1.view.buf, *ox = f.ox.view.buf, *oy = f.oy.view.buf;
    const double *sx = f.sx.view.buf, *sy = f.sy.view.buf;
    Py_ssize_t ny = f.data.view.shape[0], nx = f.data.view.shape[1];
    Py_ssize_t mh = f.out_data.view.shape[0], mw = f.out_data.view.shape[1];
    for (Py_ssize_t i = 0; i < n; i++) {
        /* every box within the image and its place within the mosaic: nothing is written out of bounds */
        if (x0[i] < 0 || y0[i] < 0 || x1[i] > nx || y1[i] > ny || ox[i] < 0 || oy[i] < 0 || ox[i] > mw || oy[i] > mh
            || (x1[i] > x0[i] && ox[i] + (x1[i] - x0[i]) > mw) || (y1[i] > y0[i] && oy[i] + (y1[i] - y0[i]) > mh)) {
            PyErr_Format(PyExc_ValueError, "cut-out %zd: its box is not within the image, or its place not within "
                         "the mosaic", i);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        fill_one(&f, own[i], x0[i], x1[i], y0[i], y1[i], ox[i], oy[i], sx[i], sy[i]);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    fill_release(&f);
    return result;
}

/* SEP's oversampling limits of a circle of radius r (aperture.c, oversamp_ann_circle). */
static void sep_circle_limits(double r, double *r_in2, double *r_out2)
{
    *r_in2 = r - 0.7072;
    *r_in2 = (*r_in2 > 0.0) ? (*r_in2) * (*r_in2) : 0.0;
    *r_out2 = r + 0.7072;
    *r_out2 = (*r_out2) * (*r_out2);
}

#define APER_TRUNC 0x0010  /* SEP_APER_TRUNC, SEP_APER_HASMASKED (sep.h) */
#define APER_HASMASKED 0x0020

/* Whether C converts v to an int64 (not NaN, not beyond int64's range): SEP's casts of what it
 * does not are the x86 CPU's, INT64_MIN. */
static inline int fits_int64(double v)
{
    return v >= -9.2e18 && v <= 9.2e18;
}

/* SEP's boxextent of a circle of radius r around (x, y) on a w x h image: the pixels
 * [xmin, xmax) x [ymin, ymax), clipped to the image (APER_TRUNC in flag when clipped). A bound C
 * cannot convert is taken as SEP's x86 build gets it, INT64_MIN. */
static void sep_box(double x, double y, double r, Py_ssize_t w, Py_ssize_t h, int64_t box[4], short *flag)
{
    double bounds[4] = {x - r + 0.5, x + r + 1.4999999, y - r + 0.5, y + r + 1.4999999};
    for (int k = 0; k < 4; k++)
        box[k] = fits_int64(bounds[k]) ? (int64_t)bounds[k] : INT64_MIN;
    if (box[0] < 0) { box[0] = 0; *flag |= APER_TRUNC; }
    if (box[1] > w) { box[1] = w; *flag |= APER_TRUNC; }
    if (box[2] < 0) { box[2] = 0; *flag |= APER_TRUNC; }
    if (box[3] > h) { box[3] = h; *flag |= APER_TRUNC; }
}

/* One annulus as SEP 1.4's sep_sum_circann measures it at subpix=1 with an error array and a
 * mask (aperture.i with aperture.c's circann macros, no gain, maskthresh 0), step for step, in
 * its order: the box (boxextent), each pixel that may be in the annulus (APER_COMPARE1) and
 * its overlap (1 if surely inside, APER_COMPARE2; else its centre's test, APER_COMPARE3),
 * pixel values and variances in float as SEP's PIXTYPE, sums in double, the masked area
 * corrected for. ``count`` is the masked area, which is what SEP's sum of the mask as data
 * gives at subpix=1. Returns -1 for radii SEP refuses (not 0 <= rin <= rout), else 0. */
static int annulus_one(const Image *data, const Image *error, const Image *flags, double x, double y, double rin,
                       double rout, double *sum, double *sum_error, short *flag, double *count)
{
    *flag = 0;
    if (!(rin >= 0.0 && rout >= rin))
        return -1;
    Py_ssize_t w = data->view.shape[1], h = data->view.shape[0];
    double rin2 = rin * rin, rout2 = rout * rout, rin_in2, rin_out2, rout_in2, rout_out2;
    sep_circle_limits(rin, &rin_in2, &rin_out2);
    sep_circle_limits(rout, &rout_in2, &rout_out2);
    double tv = 0.0, sigtv = 0.0, totarea = 0.0, maskarea = 0.0;
    int64_t box[4];
    sep_box(x, y, rout, w, h, box, flag);
    int64_t xmin = box[0], xmax = box[1], ymin = box[2], ymax = box[3];
    Py_ssize_t data_step = data->view.strides[1], error_step = error->view.strides[1], flag_step = flags->view.strides[1];
    for (int64_t iy = ymin; iy < ymax; iy++) {
        const char *values = at(data, iy, 0), *errors = at(error, iy, 0);
        const unsigned char *masked = (const unsigned char *)at(flags, iy, 0);
        for (int64_t ix = xmin; ix < xmax; ix++) {
            double dx = (double)ix - x, dy = (double)iy - y;
            double rpix2 = dx * dx + dy * dy;
            if (!((rpix2 < rout_out2) && (rpix2 > rin_in2)))
                continue;
            double overlap = 1.0;
            if ((rpix2 > rout_in2) || (rpix2 < rin_out2))
                overlap = ((rpix2 < rout2) && (rpix2 > rin2)) ? 1.0 : 0.0;
            float pix = data->kind == 'f' ? *(const float *)(values + ix * data_step)
                                          : (float)*(const double *)(values + ix * data_step);
            float varpix = error->kind == 'f' ? *(const float *)(errors + ix * error_step)
                                              : (float)*(const double *)(errors + ix * error_step);
            varpix *= varpix;
            if (masked[ix * flag_step]) {
                *flag |= APER_HASMASKED;
                maskarea += overlap;
            } else {
                tv += pix * overlap;
                sigtv += varpix * overlap;
            }
            totarea += overlap;
        }
    }
    double tmp;
    tv *= (tmp = totarea / (totarea - maskarea));
    sigtv *= tmp;
    *sum = tv;
    *sum_error = sqrt(sigtv);
    *count = maskarea;
    return 0;
}

static PyObject *annulus_sums(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[11];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                          &o[10]))
        return NULL;
    Image data = {0}, error = {0}, flags = {0};
    Column x = {0}, y = {0}, rin = {0}, rout = {0}, sum = {0}, sum_error = {0}, count = {0}, flag = {0};
    PyObject *result = NULL;
    if (image_get(o[0], &data, 0, "data", "fd") < 0 || image_get(o[1], &error, 0, "error", "fd") < 0
        || same_shape(&data, &error, "error") < 0 || image_get(o[2], &flags, 0, "flags", "?") < 0
        || same_shape(&data, &flags, "flags") < 0 || column_get(o[3], &x, 'd', 0, -1, "x") < 0)
        goto done;
    Py_ssize_t n = x.view.shape[0];
    if (column_get(o[4], &y, 'd', 0, n, "y") < 0 || column_get(o[5], &rin, 'd', 0, n, "rin") < 0
        || column_get(o[6], &rout, 'd', 0, n, "rout") < 0 || column_get(o[7], &sum, 'd', 1, n, "out_sum") < 0
        || column_get(o[8], &sum_error, 'd', 1, n, "out_error") < 0 || column_get(o[9], &flag, 'h', 1, n, "out_flag") < 0
        || column_get(o[10], &count, 'd', 1, n, "out_count") < 0)
        goto done;
    const double *xs = x.view.buf, *ys = y.view.buf, *rins = rin.view.buf, *routs = rout.view.buf;
    double *sums = sum.view.buf, *errors = sum_error.view.buf, *counts = count.view.buf;
    short *flags_out = flag.view.buf;
    int refused = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        refused |= annulus_one(&data, &error, &flags, xs[i], ys[i], rins[i], routs[i], &sums[i], &errors[i],
                               &flags_out[i], &counts[i]) < 0;
    Py_END_ALLOW_THREADS
    if (refused) {
        PyErr_SetString(PyExc_ValueError, "an annulus's radii are not 0 <= rin <= rout");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    image_release(&data);
    image_release(&error);
    image_release(&flags);
    Column *columns[] = {&x, &y, &rin, &rout, &sum, &sum_error, &flag, &count};
    for (size_t k = 0; k < sizeof columns / sizeof *columns; k++)
        column_release(columns[k]);
    return result;
}

/* Annuli of sep_flux_radius's growth curve (FLUX_RADIUS_BUFSIZE in sep.h). */
#define GROWTH_BINS 64

/* SEP's inverse(): the radius at which the growth curve ``cumulative`` (bin k ending at
 * (k + 1) * rmax / GROWTH_BINS) reaches ``target``, linearly between bins. */
static double growth_inverse(double rmax, const double *cumulative, double target)
{
    double step = rmax / GROWTH_BINS;
    int i = 0;
    while (i < GROWTH_BINS && cumulative[i] < target)
        i++;
    if (i == 0) {
        if (target <= 0. || cumulative[0] == 0.)
            return 0.;
        return step * target / cumulative[0];
    }
    if (i == GROWTH_BINS)
        return rmax;
    return step * (i + (target - cumulative[i - 1]) / (cumulative[i] - cumulative[i - 1]));
}

/* SEP's bin of a sub-pixel or pixel, (int64_t)(distance / step): a value no int64 holds (NaN, or
 * infinite when rmax is 0) is INT64_MIN on x86, whose element offset (times 8) wraps to 0 in SEP's
 * address arithmetic: bin 0, where SEP's x86 build adds it. */
static inline int64_t growth_bin(double scaled)
{
    return fits_int64(scaled) ? (int64_t)scaled : 0;
}

/* The bins of one growth curve: SEP's sums, and with a mask its areas (all and masked). */
typedef struct {
    double sum[GROWTH_BINS], area[GROWTH_BINS], masked_area[GROWTH_BINS];
    int has_mask;
} Growth;

/* A (sub-)pixel of ``weight`` (its share of a pixel: scale2, or 1.0 whole) into bin j, as SEP adds
 * it (weight * pix is pix itself for a whole pixel: SEP's ``sum[j] += pix``). */
static inline void growth_add(Growth *growth, int64_t j, double weight, float pix, int is_masked)
{
    if (j >= GROWTH_BINS)
        return;
    if (is_masked)
        growth->masked_area[j] += weight;
    else
        growth->sum[j] += weight * pix;
    if (growth->has_mask)
        growth->area[j] += weight;
}

/* sep.flux_radius(data, x, y, rmax, frac, normflux=total, mask=mask, subpix=subpix) of one
 * source, as sep_sum_circann_multi and sep_flux_radius compute it: the box (boxextent of
 * rmax + 1.5), each pixel's sub-pixels binned by their distance (sqrt, times 1/step, cut
 * to an int) in the order SEP adds them, a whole pixel binned alone only where it is not
 * near a bin's edge (never when a bin is narrower than a pixel's diagonal, which SEP finds
 * with fmod), the masked area corrected for bin by bin, and SEP's inverse. What SEP also
 * sums and flux_radius does not read (variances; the area without a mask) is left out; the sums'
 * additions are SEP's, one by one, so the radius is SEP's to the bit. Pixel values are read
 * as SEP's PIXTYPE (float). */
static double growth_radius(const Image *data, const Image *mask, double x, double y, double rmax, double total,
                            double frac, int subpix, short *flag)
{
    Growth growth = {.has_mask = mask != NULL};
    double *sum = growth.sum;
    *flag = 0;
    Py_ssize_t w = data->view.shape[1], h = data->view.shape[0];
    double scale = 1.0 / subpix, scale2 = scale * scale, offset = 0.5 * (scale - 1.0);
    double r_out = rmax + 1.5, r_out2 = r_out * r_out;
    double step = rmax / GROWTH_BINS, stepdens = 1.0 / step;
    double prevbinmargin = 0.7072, nextbinmargin = step - 0.7072;
    /* a bin narrower than a pixel's diagonal: fmod's remainder (>= 0) always passes SEP's test */
    int every_pixel_sampled = step > 0.0 && nextbinmargin < 0.0;
    int64_t box[4];
    sep_box(x, y, r_out, w, h, box, flag);
    int64_t xmin = box[0], xmax = box[1], ymin = box[2], ymax = box[3];
    int has_mask = growth.has_mask;
    Py_ssize_t data_step = data->view.strides[1], mask_step = has_mask ? mask->view.strides[1] : 0;
    for (int64_t iy = ymin; iy < ymax; iy++) {
        const char *values = at(data, iy, 0);
        const unsigned char *masks = has_mask ? (const unsigned char *)at(mask, iy, 0) : NULL;
        for (int64_t ix = xmin; ix < xmax; ix++) {
            double dx = (double)ix - x, dy = (double)iy - y;
            double rpix2 = dx * dx + dy * dy;
            if (!(rpix2 < r_out2))
                continue;
            float pix = data->kind == 'f' ? *(const float *)(values + ix * data_step)
                                          : (float)*(const double *)(values + ix * data_step);
            int is_masked = has_mask && masks[ix * mask_step];
            if (is_masked)
                *flag |= APER_HASMASKED;
            int sampled = every_pixel_sampled;
            double rpix = 0.0;
            if (!sampled) {
                rpix = sqrt(rpix2);
                double near_edge = fmod(rpix, step);
                sampled = near_edge < prevbinmargin || near_edge > nextbinmargin;
            }
            if (!sampled) {
                growth_add(&growth, growth_bin(rpix * stepdens), 1.0, pix, is_masked);
                continue;
            }
            dx += offset;
            dy += offset;
            for (int sy = subpix; sy--; dy += scale) {
                double dx1 = dx, dy2 = dy * dy;
                for (int sx = subpix; sx--; dx1 += scale)
                    growth_add(&growth, growth_bin(sqrt(dx1 * dx1 + dy2) * stepdens), scale2, pix, is_masked);
            }
        }
    }
    if (has_mask)
        for (int j = GROWTH_BINS; j--;)
            sum[j] *= growth.area[j] == growth.masked_area[j] ? 0.0
                      : growth.area[j] / (growth.area[j] - growth.masked_area[j]);
    for (int i = 1; i < GROWTH_BINS; i++)
        sum[i] += sum[i - 1];
    return growth_inverse(rmax, sum, frac * total);
}

static PyObject *flux_radius(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[8];
    double frac;
    int subpix;
    if (!PyArg_ParseTuple(args, "OOOOOOdiOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &frac, &subpix, &o[6], &o[7]))
        return NULL;
    Image data = {0}, mask = {0};
    Column x = {0}, y = {0}, rmax = {0}, total = {0}, radius = {0}, flag = {0};
    PyObject *result = NULL;
    int has_mask = o[1] != Py_None;
    if (subpix < 1) {
        PyErr_SetString(PyExc_ValueError, "subpix: at least 1");
        return NULL;
    }
    if (image_get(o[0], &data, 0, "data", "fd") < 0
        || (has_mask && (image_get(o[1], &mask, 0, "mask", "?") < 0 || same_shape(&data, &mask, "mask") < 0))
        || column_get(o[2], &x, 'd', 0, -1, "x") < 0)
        goto done;
    Py_ssize_t n = x.view.shape[0];
    if (column_get(o[3], &y, 'd', 0, n, "y") < 0 || column_get(o[4], &rmax, 'd', 0, n, "rmax") < 0
        || column_get(o[5], &total, 'd', 0, n, "normflux") < 0 || column_get(o[6], &radius, 'd', 1, n, "out_radius") < 0
        || column_get(o[7], &flag, 'h', 1, n, "out_flag") < 0)
        goto done;
    const double *xs = x.view.buf, *ys = y.view.buf, *rmaxs = rmax.view.buf, *totals = total.view.buf;
    double *radii = radius.view.buf;
    short *flags_out = flag.view.buf;
    int refused = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !refused; i++) {
        refused = !(rmaxs[i] >= 0.0);  /* SEP: ILLEGAL_APER_PARAMS */
        if (!refused)
            radii[i] = growth_radius(&data, has_mask ? &mask : NULL, xs[i], ys[i], rmaxs[i], totals[i], frac, subpix,
                                     &flags_out[i]);
    }
    Py_END_ALLOW_THREADS
    if (refused) {
        PyErr_SetString(PyExc_ValueError, "rmax: not >= 0");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    image_release(&data);
    image_release(&mask);
    Column *columns[] = {&x, &y, &rmax, &total, &radius, &flag};
    for (size_t k = 0; k < sizeof columns / sizeof *columns; k++)
        column_release(columns[k]);
    return result;
}

/* The integer bounds of box k, and its place in the mosaic. */
typedef struct {
    Column x0, x1, y0, y1, ox, oy;
} Boxes;

static int boxes_get(PyObject **o, Boxes *b, Py_ssize_t *n)
{
    Column *columns[] = {&b->x0, &b->x1, &b->y0, &b->y1, &b->ox, &b->oy};
    const char *names[] = {"x0", "x1", "y0", "y1", "ox", "oy"};
    for (int k = 0; k < 6; k++) {
        if (o[k] == NULL)
            continue;
        if (column_get(o[k], columns[k], 'l', 0, k ? *n : -1, names[k]) < 0)
            return -1;
        if (k == 0)
            *n = b->x0.view.shape[0];
    }
    return 0;
}

static void boxes_release(Boxes *b)
{
    Column *columns[] = {&b->x0, &b->x1, &b->y0, &b->y1, &b->ox, &b->oy};
    for (int k = 0; k < 6; k++)
        column_release(columns[k]);
}

static inline float read_as_float(const Image *image, Py_ssize_t y, Py_ssize_t x)
{
    const char *p = at(image, y, x);
    switch (image->kind) {
    case 'f': return *(const float *)p;
    case 'd': return (float)*(const double *)p;
    case '?': return *(const unsigned char *)p ? 1.0f : 0.0f;
    case 'b': return (float)*(const signed char *)p;
    default: return (float)*(const unsigned char *)p;
    }
}

static PyObject *paste(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *image_o, *out_o, *o[6];
    Py_ssize_t margin;
    if (!PyArg_ParseTuple(args, "OOOOOOOOn", &image_o, &out_o, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &margin))
        return NULL;
    Image image = {0}, out = {0};
    Boxes b;
    memset(&b, 0, sizeof b);
    Py_ssize_t n = 0;
    PyObject *result = NULL;
    if (image_get(image_o, &image, 0, "image", "fd?bB") < 0 || image_get(out_o, &out, 1, "out", "f") < 0
        || boxes_get(o, &b, &n) < 0)
        goto done;
    Py_ssize_t ny = image.view.shape[0], nx = image.view.shape[1], mh = out.view.shape[0], mw = out.view.shape[1];
    if (margin < 0 || margin > (PY_SSIZE_T_MAX >> 2)) {  /* bounded: no sum of a bound and the margin overflows */
        PyErr_SetString(PyExc_ValueError, "margin: negative, or beyond any image");
        goto done;
    }
    const int64_t *x0 = b.x0.view.buf, *x1 = b.x1.view.buf, *y0 = b.y0.view.buf, *y1 = b.y1.view.buf,
                  *ox = b.ox.view.buf, *oy = b.oy.view.buf;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (x0[k] < 0 || y0[k] < 0 || x1[k] < x0[k] || y1[k] < y0[k] || x1[k] >= nx || y1[k] >= ny || ox[k] < 0
            || oy[k] < 0 || ox[k] > mw || oy[k] > mh) {  /* first: the sums below stay within range */
            PyErr_Format(PyExc_ValueError, "box %zd: not within the image, or its place not within the mosaic", k);
            goto done;
        }
        Py_ssize_t ya = y0[k] - margin < 0 ? 0 : y0[k] - margin, yb = y1[k] + margin + 1 > ny ? ny : y1[k] + margin + 1;
        Py_ssize_t xa = x0[k] - margin < 0 ? 0 : x0[k] - margin, xb = x1[k] + margin + 1 > nx ? nx : x1[k] + margin + 1;
        Py_ssize_t ty = oy[k] + ya - y0[k], tx = ox[k] + xa - x0[k];
        if (x0[k] < 0 || y0[k] < 0 || x1[k] < x0[k] || y1[k] < y0[k] || x1[k] >= nx || y1[k] >= ny || ty < 0 || tx < 0
            || ty + (yb - ya) > mh || tx + (xb - xa) > mw) {
            PyErr_Format(PyExc_ValueError, "box %zd: not within the image, or its place not within the mosaic", k);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t ya = y0[k] - margin < 0 ? 0 : y0[k] - margin, yb = y1[k] + margin + 1 > ny ? ny : y1[k] + margin + 1;
        Py_ssize_t xa = x0[k] - margin < 0 ? 0 : x0[k] - margin, xb = x1[k] + margin + 1 > nx ? nx : x1[k] + margin + 1;
        Py_ssize_t ty = oy[k] + ya - y0[k], tx = ox[k] + xa - x0[k];
        Py_ssize_t step = out.view.strides[1];
        for (Py_ssize_t y = ya; y < yb; y++) {
            char *row = at(&out, ty + (y - ya), tx);
            if (image.kind == 'f' && image.view.strides[1] == (Py_ssize_t)sizeof(float) && step == (Py_ssize_t)sizeof(float))
                memcpy(row, at(&image, y, xa), (size_t)(xb - xa) * sizeof(float));
            else
                for (Py_ssize_t x = xa; x < xb; x++)
                    *(float *)(row + (x - xa) * step) = read_as_float(&image, y, x);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    image_release(&image);
    image_release(&out);
    boxes_release(&b);
    return result;
}

static PyObject *own_pixels(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *segmap_o, *labels_o, *o[6] = {NULL}, *counts_o, *rows_o, *cols_o;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &segmap_o, &labels_o, &o[0], &o[1], &o[2], &o[3], &counts_o, &rows_o,
                          &cols_o))
        return NULL;
    Image segmap = {0};
    Boxes b;
    memset(&b, 0, sizeof b);
    Column labels = {0}, counts = {0}, rows = {0}, cols = {0};
    Py_ssize_t n = 0;
    PyObject *result = NULL;
    if (image_get(segmap_o, &segmap, 0, "segmap", "bBhHiIlLqQ") < 0 || boxes_get(o, &b, &n) < 0
        || column_get(labels_o, &labels, 'l', 0, n, "labels") < 0 || column_get(counts_o, &counts, 'l', 1, n, "out_counts") < 0)
        goto done;
    int listing = rows_o != Py_None;
    if (listing && (column_get(rows_o, &rows, 'l', 1, -1, "out_rows") < 0 || column_get(cols_o, &cols, 'l', 1, -1, "out_cols") < 0))
        goto done;
    const int64_t *x0 = b.x0.view.buf, *x1 = b.x1.view.buf, *y0 = b.y0.view.buf, *y1 = b.y1.view.buf;
    const int64_t *own = labels.view.buf;
    int64_t *count = counts.view.buf;
    Py_ssize_t ny = segmap.view.shape[0], nx = segmap.view.shape[1];
    for (Py_ssize_t k = 0; k < n; k++) {
        if (x0[k] < 0 || y0[k] < 0 || x1[k] < x0[k] || y1[k] < y0[k] || x1[k] >= nx || y1[k] >= ny) {
            PyErr_Format(PyExc_ValueError, "box %zd: not within the segmentation map", k);
            goto done;
        }
    }
    Py_ssize_t room = listing ? rows.view.shape[0] : 0, at_pixel = 0;
    if (listing && cols.view.shape[0] != room) {
        PyErr_SetString(PyExc_ValueError, "out_rows, out_cols: not of one length");
        goto done;
    }
    int64_t *row_out = listing ? rows.view.buf : NULL, *col_out = listing ? cols.view.buf : NULL;
    int short_of_room = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n && !short_of_room; k++) {
        int64_t found = 0;
        for (Py_ssize_t y = y0[k]; y <= y1[k]; y++)
            for (Py_ssize_t x = x0[k]; x <= x1[k]; x++)
                if (read_label(&segmap, y, x) == own[k]) {
                    if (listing) {
                        if (at_pixel >= room) {
                            short_of_room = 1;
                            break;
                        }
                        row_out[at_pixel] = y - y0[k];
                        col_out[at_pixel] = x - x0[k];
                        at_pixel++;
                    }
                    found++;
                }
        count[k] = found;
    }
    Py_END_ALLOW_THREADS
    if (short_of_room) {
        PyErr_SetString(PyExc_ValueError, "out_rows, out_cols: too short for the pixels found");
        goto done;
    }
    result = PyLong_FromSsize_t(at_pixel);
done:
    image_release(&segmap);
    boxes_release(&b);
    column_release(&labels);
    column_release(&counts);
    column_release(&rows);
    column_release(&cols);
    return result;
}

static PyMethodDef methods[] = {
    {"paste", paste, METH_VARARGS,
     "paste(image, out, x0, x1, y0, y1, ox, oy, margin): each box (inclusive bounds) with margin more, into out."},
    {"own_pixels", own_pixels, METH_VARARGS,
     "own_pixels(segmap, labels, x0, x1, y0, y1, out_counts, out_rows, out_cols): each box's pixels labelled "
     "labels[k] (box coordinates, np.nonzero's order), their count per box; out_rows None: the counts only. "
     "Returns the pixels listed."},
    {"annulus_sums", annulus_sums, METH_VARARGS,
     "annulus_sums(data, error, flags, x, y, rin, rout, out_sum, out_error, out_flag, out_count): "
     "sep.sum_circann(data, x, y, rin, rout, err=error, mask=flags, subpix=1) and the flagged pixels of each annulus."},
    {"flux_radius", flux_radius, METH_VARARGS,
     "flux_radius(data, mask, x, y, rmax, normflux, frac, subpix, out_radius, out_flag): sep.flux_radius(data, x, y, "
     "rmax, frac, normflux=normflux, mask=mask, subpix=subpix) of each source, into out_radius and out_flag."},
    {"foreign", foreign, METH_VARARGS,
     "foreign(segmap, companions, own, cx, cy, half, out): photometry._foreign of each source, into out (int8)."},
    {"fill", fill, METH_VARARGS,
     "fill(data, error, mask, segmap, companions, own, x0, x1, y0, y1, ox, oy, sx, sy, out_data, out_error, "
     "out_mask, out_neighbour, out_replaced): each source's corrected cut-out, written into the mosaic."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "skysift.core._loops",
    "Photometry's pixel loops (photometry._foreign, photometry.corrected_cutout, the pedestal annuli's counts, "
    "the half-light radius's growth curves), compiled.",
    -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__loops(void)
{
    PyObject *created = PyModule_Create(&module);
    if (created == NULL)
        return NULL;
    PyObject *exported = Py_BuildValue("[sssss]", "annulus_sums", "fill", "foreign", "own_pixels", "paste");
    if (exported == NULL || PyModule_AddObject(created, "__all__", exported) < 0) {
        Py_XDECREF(exported);
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
