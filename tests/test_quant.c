/* test_quant.c: main() of the test_quant binary. The suites are in test_quant_*.c. */
#include "tests/suites.h"

int main(void)
{
    Suite *suites[] = { quant_ops_suite(), quant_observer_suite(), quant_fold_suite(),
                        quant_mixed_suite() };
    return lb_run_suites(suites, 4);
}
