/*
 * pcapng.c - the pcapng writer (replay.h). Block layouts follow the pcapng specification
 * (draft-ietf-opsawg-pcapng): SHB 0x0A0D0D0A, IDB 1, EPB 6; options padded to 32
 * bits; host byte order, announced by the byte-order magic.
 */
#include "replay.h"

#include <string.h>

#define OPT_ENDOFOPT 0
#define OPT_COMMENT  1
#define IF_TSRESOL   9

static uint32_t pad4(uint32_t n)
{
    return (n + 3u) & ~3u;
}

static int put32(FILE *f, uint32_t v)
{
    return fwrite(&v, 4, 1, f) == 1 ? 0 : -1;
}

static int put_opt(FILE *f, uint16_t code, const void *val, uint16_t len)
{
    static const uint8_t zeros[4];
    uint16_t h[2] = {code, len};
    if (fwrite(h, 4, 1, f) != 1 || (len && fwrite(val, len, 1, f) != 1))
        return -1;
    uint32_t padlen = pad4(len) - len;
    return padlen && fwrite(zeros, padlen, 1, f) != 1 ? -1 : 0;
}

#define SHB_USERAPPL 4
#define IF_NAME      2
#define IF_DESC      3

/* An option's length: what fits in its 16-bit field, cut at 4 KiB (a reader
 * shows a comment; it need not hold a whole command line of any size). */
static uint16_t opt_len(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return (uint16_t)(n > 4096 ? 4096 : n);
}

static uint32_t opt_size(const char *s)
{
    return s ? 4 + pad4(opt_len(s)) : 0;
}

static int put_str_opt(FILE *f, uint16_t code, const char *s)
{
    return s ? put_opt(f, code, s, opt_len(s)) : 0;
}

static int write_shb(FILE *f, const struct pcapng_info *in)
{
    const char *appl = in ? in->application : NULL, *comment = in ? in->comment : NULL;
    uint32_t opts = opt_size(appl) + opt_size(comment);
    uint32_t len = 28 + (opts ? opts + 4 : 0);
    int rc = put32(f, 0x0A0D0D0A) | put32(f, len) | put32(f, 0x1A2B3C4D);
    uint16_t ver[2] = {1, 0};
    int64_t section_len = -1;
    rc |= fwrite(ver, 4, 1, f) != 1;
    rc |= fwrite(&section_len, 8, 1, f) != 1;
    rc |= put_str_opt(f, OPT_COMMENT, comment) | put_str_opt(f, SHB_USERAPPL, appl);
    if (opts)
        rc |= put_opt(f, OPT_ENDOFOPT, NULL, 0);
    return rc | put32(f, len);
}

static int write_idb(FILE *f, const struct pcapng_info *in)
{
    const char *name = in ? in->if_name : NULL, *desc = in ? in->if_description : NULL;
    uint8_t resol = 9; /* 10^-9 s */
    uint32_t len = 20 + 8 + opt_size(name) + opt_size(desc) + 4;
    int rc = put32(f, 1) | put32(f, len);
    uint16_t lt[2] = {1 /* LINKTYPE_ETHERNET */, 0};
    rc |= fwrite(lt, 4, 1, f) != 1;
    rc |= put32(f, 0); /* snaplen: unlimited */
    rc |= put_str_opt(f, IF_NAME, name) | put_str_opt(f, IF_DESC, desc);
    rc |= put_opt(f, IF_TSRESOL, &resol, 1);
    rc |= put_opt(f, OPT_ENDOFOPT, NULL, 0);
    return rc | put32(f, len);
}

int pcapng_open(struct pcapng *w, const char *path, const struct pcapng_info *info)
{
    w->to_stdout = !strcmp(path, "-");
    w->f = w->to_stdout ? stdout : fopen(path, "wb");
    if (!w->f)
        return -1;
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    return write_shb(w->f, info) | write_idb(w->f, info) ? -1 : 0;
}

int pcapng_write(struct pcapng *w, uint64_t ts_ns, uint32_t cap_len, uint32_t wire_len,
                 const uint8_t *data, const char *comment)
{
    static const uint8_t zeros[4];
    uint16_t clen = comment ? (uint16_t)strlen(comment) : 0;
    uint32_t opts = comment ? 4 + pad4(clen) + 4 : 0;
    uint32_t len = 32 + pad4(cap_len) + opts;
    FILE *f = w->f;
    int rc = put32(f, 6) | put32(f, len) | put32(f, 0) | put32(f, (uint32_t)(ts_ns >> 32)) |
             put32(f, (uint32_t)ts_ns) | put32(f, cap_len) | put32(f, wire_len);
    rc |= cap_len && fwrite(data, cap_len, 1, f) != 1;
    rc |= pad4(cap_len) != cap_len && fwrite(zeros, pad4(cap_len) - cap_len, 1, f) != 1;
    if (comment)
        rc |= put_opt(f, OPT_COMMENT, comment, clen) | put_opt(f, OPT_ENDOFOPT, NULL, 0);
    return rc | put32(f, len) ? -1 : 0;
}

int pcapng_close(struct pcapng *w)
{
    if (!w->f)
        return 0;
    int rc = fflush(w->f) || ferror(w->f) ? -1 : 0;
    if (!w->to_stdout && fclose(w->f))
        rc = -1;
    w->f = NULL;
    return rc;
}
