/*
 * Plain main() for fuzz targets: feeds every file named on the command line
 * (or found in a named directory) to LLVMFuzzerTestOneInput once. ctest runs
 * it over each seed corpus so the corpora stay regression tests without
 * libFuzzer. Fails when an input cannot be read or no input was found.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (16u << 20)

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n;
    int ret = 0;

    if (!fp) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    buf = malloc(REPLAY_MAX_INPUT);
    if (!buf) {
        ret = -1;
        goto out;
    }
    n = fread(buf, 1, REPLAY_MAX_INPUT, fp);
    if (ferror(fp)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        ret = -1;
        goto out;
    }
    /* Hand the target an exact-size copy so overreads are caught. */
    {
        uint8_t *exact = malloc(n ? n : 1);

        if (!exact) {
            ret = -1;
            goto out;
        }
        memcpy(exact, buf, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
    }
out:
    free(buf);
    fclose(fp);
    return ret;
}

int main(int argc, char **argv)
{
    unsigned count = 0;

    for (int i = 1; i < argc; i++) {
        struct stat sb;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &sb) < 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (run_file(argv[i]) < 0)
                return 1;
            count++;
            continue;
        }
        d = opendir(argv[i]);
        if (!d)
            return 1;
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            int len;

            if (e->d_name[0] == '.')
                continue;
            len = snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            if (len < 0 || (size_t)len >= sizeof(path))
                continue;
            if (run_file(path) < 0) {
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
    }
    printf("replayed %u inputs\n", count);
    return count ? 0 : 1;
}
