/* suites.h: every Check suite, so each test binary's main() can list its module's suites. */
#ifndef LB_TESTS_SUITES_H
#define LB_TESTS_SUITES_H

#include <check.h>

Suite *autograd_core_suite(void);   /* test_autograd.c       */
Suite *autograd_conv_suite(void);   /* test_autograd_conv.c  */
Suite *layers_suite(void);          /* test_layers.c         */
Suite *layers_quant_suite(void);    /* test_layers_quant.c   */
Suite *quant_fold_suite(void);      /* test_quant_fold.c     */
Suite *train_optim_suite(void);     /* test_train_optim.c    */
Suite *train_loop_suite(void);      /* test_train.c          */
Suite *train_sensitivity_suite(void); /* test_train_sensitivity.c */
Suite *datasets_suite(void);        /* test_datasets.c       */
Suite *datasets_image_suite(void);  /* test_datasets_image.c */
Suite *export_suite(void);          /* test_export.c         */
Suite *quant_ops_suite(void);       /* test_quant_ops.c      */
Suite *quant_observer_suite(void);  /* test_quant_observer.c */
Suite *quant_mixed_suite(void);     /* test_quant_mixed.c    */
Suite *runtime_suite(void);         /* test_runtime.c        */
Suite *onnx_suite(void);            /* test_onnx.c           */
Suite *cli_plot_suite(void);        /* test_cli.c            */
Suite *cli_mixed_suite(void);       /* test_cli_mixed.c      */
Suite *cli_ablate_suite(void);      /* test_cli_ablate.c     */

/* Runs the suites with CK_FORK on; returns 0 when every test passed. */
static inline int lb_run_suites(Suite **suites, int n)
{
    SRunner *sr = srunner_create(suites[0]);
    for (int i = 1; i < n; i++) srunner_add_suite(sr, suites[i]);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

#endif
