/*
 * TEST-ONLY: the real zlib and libzstd driven the way QEMU 7.2's multifd channels drive them (one stream per
 * channel; per packet one call per page, the last one flushing; the receiver inflating page by page). The tests
 * compile it with cc against zlib1g-dev and libzstd-dev (tests/helpers/codec-peer.ts).
 *
 *   multifd-codec-peer zlib|zstd compress LEVEL   stdin: packets, each u32 parts, then per part u32 length + bytes
 *                                                 stdout: per packet u32 length + compressed bytes
 *   multifd-codec-peer zlib|zstd decompress       stdin: packets, each u32 pages, u32 page size, u32 length + bytes
 *                                                 stdout: per packet the pages' bytes
 * All u32 are little-endian. Any error (including input left over after a packet's pages) goes to stderr with the
 * packet's index and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static void fail(const char *what, long packet, long detail) {
    fprintf(stderr, "packet %ld: %s (%ld)\n", packet, what, detail);
    exit(1);
}

/* 1 when a u32 was read, 0 at a clean end of input. */
static int read_u32(uint32_t *v) {
    unsigned char b[4];
    size_t n = fread(b, 1, 4, stdin);
    if (n == 0 && feof(stdin)) return 0;
    if (n != 4) fail("truncated input", -1, (long)n);
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static void read_bytes(unsigned char *p, size_t n) {
    if (fread(p, 1, n, stdin) != n) fail("truncated input", -1, (long)n);
}

static void write_u32(uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    fwrite(b, 1, 4, stdout);
}

static unsigned char *grow(unsigned char *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    *cap = need * 2;
    p = realloc(p, *cap);
    if (!p) fail("out of memory", -1, (long)need);
    return p;
}

static int compress_packets(int zstd, int level) {
    z_stream zs;
    ZSTD_CStream *zcs = NULL;
    memset(&zs, 0, sizeof zs);
    if (zstd) {
        zcs = ZSTD_createCStream();
        if (!zcs || ZSTD_isError(ZSTD_initCStream(zcs, level))) fail("ZSTD_initCStream", -1, level);
    } else if (deflateInit(&zs, level) != Z_OK) {
        fail("deflateInit", -1, level);
    }
    unsigned char *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    uint32_t parts;
    for (long packet = 0; read_u32(&parts); packet++) {
        size_t used = 0;
        for (uint32_t i = 0; i < parts; i++) {
            uint32_t len;
            if (!read_u32(&len)) fail("truncated input", packet, i);
            in = grow(in, &in_cap, len + 1);
            read_bytes(in, len);
            int last = i == parts - 1;
            if (len == 0 && !last) continue; /* nothing to do; deflate would say Z_BUF_ERROR */
            ZSTD_inBuffer src = {in, len, 0};
            zs.next_in = in;
            zs.avail_in = len;
            for (;;) {
                out = grow(out, &out_cap, used + 65536);
                if (zstd) {
                    ZSTD_outBuffer dst = {out, out_cap, used};
                    size_t ret = ZSTD_compressStream2(zcs, &dst, &src, last ? ZSTD_e_flush : ZSTD_e_continue);
                    if (ZSTD_isError(ret)) fail(ZSTD_getErrorName(ret), packet, i);
                    used = dst.pos;
                    if (src.pos == src.size && (!last || ret == 0)) break;
                } else {
                    zs.next_out = out + used;
                    zs.avail_out = (uInt)(out_cap - used);
                    int ret = deflate(&zs, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
                    if (ret != Z_OK) fail("deflate", packet, ret);
                    used = out_cap - zs.avail_out;
                    if (zs.avail_in == 0 && zs.avail_out > 0) break;
                }
            }
        }
        write_u32((uint32_t)used);
        fwrite(out, 1, used, stdout);
    }
    if (zstd) ZSTD_freeCStream(zcs);
    else deflateEnd(&zs);
    return 0;
}

static int decompress_packets(int zstd) {
    z_stream zs;
    ZSTD_DStream *zds = NULL;
    memset(&zs, 0, sizeof zs);
    if (zstd) {
        zds = ZSTD_createDStream();
        if (!zds || ZSTD_isError(ZSTD_initDStream(zds))) fail("ZSTD_initDStream", -1, 0);
    } else if (inflateInit(&zs) != Z_OK) {
        fail("inflateInit", -1, 0);
    }
    unsigned char *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    uint32_t pages, page_size, len;
    for (long packet = 0; read_u32(&pages); packet++) {
        if (!read_u32(&page_size) || !read_u32(&len)) fail("truncated input", packet, 0);
        in = grow(in, &in_cap, len + 1);
        read_bytes(in, len);
        out = grow(out, &out_cap, (size_t)pages * page_size + 1);
        ZSTD_inBuffer src = {in, len, 0};
        zs.next_in = in;
        zs.avail_in = len;
        for (uint32_t i = 0; i < pages; i++) {
            unsigned char *page = out + (size_t)i * page_size;
            if (zstd) {
                ZSTD_outBuffer dst = {page, page_size, 0};
                size_t ret;
                do {
                    ret = ZSTD_decompressStream(zds, &dst, &src);
                    if (ZSTD_isError(ret)) fail(ZSTD_getErrorName(ret), packet, i);
                } while (ret > 0 && src.pos < src.size && dst.pos < page_size);
                if (dst.pos != page_size) fail("zstd page short", packet, (long)dst.pos);
            } else {
                uLong start = zs.total_out;
                zs.next_out = page;
                zs.avail_out = page_size;
                int ret;
                do {
                    ret = inflate(&zs, i == pages - 1 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
                } while (ret == Z_OK && zs.avail_in > 0 && zs.total_out - start < page_size);
                if (ret != Z_OK) fail(zs.msg ? zs.msg : "inflate", packet, ret);
                if (zs.total_out - start != page_size) fail("zlib page short", packet, (long)(zs.total_out - start));
            }
        }
        size_t left = zstd ? src.size - src.pos : zs.avail_in;
        if (left != 0) fail("input left over after the packet's pages", packet, (long)left);
        fwrite(out, 1, (size_t)pages * page_size, stdout);
    }
    if (zstd) ZSTD_freeDStream(zds);
    else inflateEnd(&zs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "zlib") && strcmp(argv[1], "zstd"))) {
        fprintf(stderr, "usage: %s zlib|zstd compress LEVEL | decompress\n", argv[0]);
        return 2;
    }
    int zstd = strcmp(argv[1], "zstd") == 0;
    if (strcmp(argv[2], "compress") == 0 && argc == 4) return compress_packets(zstd, atoi(argv[3]));
    if (strcmp(argv[2], "decompress") == 0) return decompress_packets(zstd);
    fprintf(stderr, "usage: %s zlib|zstd compress LEVEL | decompress\n", argv[0]);
    return 2;
}
