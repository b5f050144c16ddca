/* inspect.h: the quantizer report of `lowbit inspect --ranges`. */
#ifndef LB_CLI_INSPECT_H
#define LB_CLI_INSPECT_H

#include <stdio.h>

#include "layers/model.h"

/* One line per weight and input quantizer of each conv/linear layer of m: the method and
 * bits, max|w| of the float weights, weight scales (min/median/max over channels) or learned
 * steps (LSQ) or alpha (PACT), activation ranges with their scale, and how many updates the
 * observers have counted. Float layers say "(float)". */
void lb_cli_inspect_ranges(const lb_model *m, FILE *out);

#endif
