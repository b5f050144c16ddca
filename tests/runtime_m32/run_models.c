/* run_models.c: loads each .lbm named on the command line, runs it on three fixed inputs and
 * prints the scores. Built twice by check.sh, as 64-bit and as 32-bit (-m32) code, whose
 * outputs must be identical: the runtime is portable C99 with no width assumptions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lbm.h"

int main(int argc, char **argv)
{
    static uint8_t arena[1 << 20];
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb");
        if (!f) return 1;
        static uint8_t buf[1 << 20] __attribute__((aligned(16)));
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        lbm_model m;
        char msg[160];
        lbm_status st = lbm_load(&m, buf, n, msg, sizeof msg);
        printf("%s: load %s\n", argv[a], lbm_status_str(st));
        if (st != LBM_OK) continue;
        uint8_t *in = malloc(m.input_bytes);
        int32_t *scores = malloc(m.n_classes * sizeof *scores);
        for (int t = 0; t < 3; t++) {
            for (uint32_t i = 0; i < m.input_bytes; i++) in[i] = (uint8_t)(i * 37u + (uint32_t)t * 101u);
            int pred = -1;
            st = lbm_run(&m, in, arena, sizeof arena, scores, &pred);
            printf("  run %d: %s pred %d scores", t, lbm_status_str(st), pred);
            for (uint32_t k = 0; k < m.n_classes; k++) printf(" %ld", (long)scores[k]);
            printf("\n");
        }
        free(in);
        free(scores);
    }
    return 0;
}
