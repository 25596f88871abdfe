/*
 * replay_corpus.c - runs a libFuzzer target over its saved corpus without
 * libFuzzer, so the normal test build (gcc, ASan+UBSan) re-checks every input
 * the fuzzer ever kept. Usage: replay_corpus DIR.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    DIR *d = opendir(argv[1]);
    if (!d)
        return perror(argv[1]), 2;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        for (size_t i = 0; i < len; i++)
            copy[i] = buf[i];
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
        n++;
    }
    closedir(d);
    printf("%d passed, 0 failed\n", n);
    return n > 0 ? 0 : 1;
}
