/* test_train_optim.c: optimizer and learning-rate schedule tests (train_optim_suite).
 *
 * Optimizers are checked against PyTorch 1.13 trajectories in tests/data/optim_golden.txt
 * (written by tests/data/gen/gen_optim_golden.py; the setup below must match that script),
 * plus buffers, NO_DECAY, defaults and every init error. Schedules are checked at their key
 * steps. main() is in test_train.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/suites.h"
#include "train/optim.h"
#include "train/schedule.h"

#ifndef LB_TEST_DATA_DIR
#define LB_TEST_DATA_DIR "tests/data"   /* when built by hand from the repository root */
#endif

/* ---- fixture: w (4, decays), a buffer (3) between, b (2, NO_DECAY) ------------------- */

enum { N_W = 4, N_BUF = 3, N_B = 2, N_TRAIN = N_W + N_B, GOLDEN_STEPS = 5 };

static const float P0[N_TRAIN] = { 0.5f, -1.25f, 2.0f, -0.75f, 0.125f, 1.5f };
static const float BUF0[N_BUF] = { 3.0f, -2.0f, 0.25f };

typedef struct fixture {
    lb_params *ps;
    lb_tensor *w, *buf, *b;
} fixture;

static fixture fixture_new(void)
{
    fixture  f = { 0 };
    lb_error err = { 0 };
    f.ps = lb_params_new();
    ck_assert_ptr_nonnull(f.ps);
    f.w = lb_params_add(f.ps, "w", (int64_t[]){ N_W }, 1, 0, &err);
    f.buf = lb_params_add(f.ps, "running", (int64_t[]){ N_BUF }, 1, LB_PARAM_BUFFER, &err);
    f.b = lb_params_add(f.ps, "b", (int64_t[]){ N_B }, 1, LB_PARAM_NO_DECAY, &err);
    ck_assert_msg(f.w && f.buf && f.b, "%s", err.msg);
    ck_assert_int_eq(lb_params_finalize(f.ps, &err), LB_OK);
    memcpy(f.w->data, P0, N_W * sizeof(float));
    memcpy(f.b->data, P0 + N_W, N_B * sizeof(float));
    memcpy(f.buf->data, BUF0, N_BUF * sizeof(float));
    return f;
}

/* The script's gradients: grad_k(step) = (float)sin(k + step), k over w then b. The buffer's
 * slot in ps->grads gets non-zero garbage so that touching it would show. */
static void fixture_set_grads(fixture *f, int step)
{
    for (int k = 0; k < N_W; k++) f->w->grad[k] = (float)sin((double)(k + step));
    for (int k = 0; k < N_B; k++) f->b->grad[k] = (float)sin((double)(N_W + k + step));
    lb_tensor *t = f->buf;
    int64_t    off = -1;
    for (int i = 0; i < f->ps->n; i++)
        if (f->ps->t[i] == t) off = f->ps->offset[i];
    ck_assert_int_ge(off, 0);
    for (int k = 0; k < N_BUF; k++) f->ps->grads[off + k] = 100.0f + (float)k;
}

static float fixture_value(const fixture *f, int k)
{
    return k < N_W ? f->w->data[k] : f->b->data[k - N_W];
}

static void check_buffer_untouched(const fixture *f)
{
    int64_t off = -1;
    for (int i = 0; i < f->ps->n; i++)
        if (f->ps->t[i] == f->buf) off = f->ps->offset[i];
    ck_assert_ptr_null(f->buf->grad);
    for (int k = 0; k < N_BUF; k++) {
        ck_assert_float_eq(f->buf->data[k], BUF0[k]);          /* bit-exact: never written */
        ck_assert_float_eq(f->ps->m[off + k], 0.0f);
        ck_assert_float_eq(f->ps->v[off + k], 0.0f);
    }
}

/* ---- golden trajectories ------------------------------------------------------------ */

typedef struct golden_case {
    const char  *name;     /* row name in optim_golden.txt */
    lb_optim_cfg cfg;
    float        lr;       /* lr(step) = lr * (8 - step) / 8, as in the script */
} golden_case;

static const golden_case golden_cases[] = {
    { "sgd", { .kind = LB_OPTIM_SGD, .momentum = 0.9f, .weight_decay = 1e-2f }, 0.125f },
    { "sgd_nesterov",
      { .kind = LB_OPTIM_SGD, .momentum = 0.9f, .weight_decay = 1e-2f, .nesterov = true },
      0.125f },
    { "adam", { .kind = LB_OPTIM_ADAM, .weight_decay = 1e-2f }, 0.0625f },
    { "adamw", { .kind = LB_OPTIM_ADAMW, .weight_decay = 1e-2f }, 0.0625f },
};
#define N_GOLDEN ((int)(sizeof golden_cases / sizeof golden_cases[0]))

/* Reads the row `name` of the golden file into want[N_TRAIN]. */
static void golden_load(const char *name, float *want)
{
    const char *path = LB_TEST_DATA_DIR "/optim_golden.txt";
    FILE       *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "%s: cannot open; run tests/data/gen/gen_optim_golden.py", path);
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, fp)) {
        if (line[0] == '#') continue;
        char row[64];
        int  n = 0, used = 0;
        if (sscanf(line, "%63s %d%n", row, &n, &used) != 2 || strcmp(row, name) != 0) continue;
        ck_assert_int_eq(n, N_TRAIN);
        const char *s = line + used;
        for (int k = 0; k < n; k++) {
            char *end;
            want[k] = strtof(s, &end);
            ck_assert_msg(end != s, "%s: row %s: value %d missing", path, name, k);
            s = end;
        }
        found = true;
    }
    fclose(fp);
    ck_assert_msg(found, "%s: no row named %s", path, name);
}

START_TEST(test_optim_golden)                   /* _i indexes golden_cases */
{
    const golden_case *c = &golden_cases[_i];
    float              want[N_TRAIN];
    golden_load(c->name, want);

    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    ck_assert_msg(lb_optim_init(&o, c->cfg, f.ps, &err) == LB_OK, "%s", err.msg);
    for (int step = 0; step < GOLDEN_STEPS; step++) {
        fixture_set_grads(&f, step);
        lb_optim_step(&o, f.ps, c->lr * (float)(8 - step) / 8.0f);
    }
    ck_assert_int_eq(o.t, GOLDEN_STEPS);
    for (int k = 0; k < N_TRAIN; k++) {
        const float got = fixture_value(&f, k);
        ck_assert_msg(fabsf(got - want[k]) <= 1e-6f * fabsf(want[k]),
                      "%s: p[%d] = %.9g, PyTorch %.9g (rel err %.3g)", c->name, k, (double)got,
                      (double)want[k], (double)(fabsf(got - want[k]) / fabsf(want[k])));
    }
    check_buffer_untouched(&f);
    lb_params_free(f.ps);
}
END_TEST

/* ---- properties --------------------------------------------------------------------- */

static const lb_optim_kind all_kinds[] = { LB_OPTIM_SGD, LB_OPTIM_ADAM, LB_OPTIM_ADAMW };

/* With zero gradients the only movement is weight decay: w shrinks, b (NO_DECAY) stays put
 * bit for bit, and so does the buffer. */
START_TEST(test_optim_no_decay)                 /* _i indexes all_kinds */
{
    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    lb_optim_cfg cfg = { .kind = all_kinds[_i], .momentum = 0.5f, .weight_decay = 0.1f };
    ck_assert_msg(lb_optim_init(&o, cfg, f.ps, &err) == LB_OK, "%s", err.msg);
    for (int step = 0; step < 3; step++) lb_optim_step(&o, f.ps, 0.5f);
    for (int k = 0; k < N_W; k++) ck_assert_float_lt(fabsf(f.w->data[k]), fabsf(P0[k]));
    for (int k = 0; k < N_B; k++) ck_assert_float_eq(f.b->data[k], P0[N_W + k]);
    check_buffer_untouched(&f);
    lb_params_free(f.ps);
}
END_TEST

/* decay_all (--wd-all): the NO_DECAY tensor b decays like w, as torch.optim.SGD over
 * model.parameters() decays every parameter; buffers still stay put. For SGD the first step
 * from zero gradients is p - lr*(wd*p) exactly (momentum buffer = the decay term); Adam moves
 * it by about lr towards zero, AdamW shrinks it by lr*wd*p. */
START_TEST(test_optim_decay_all)                /* _i indexes all_kinds */
{
    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    lb_optim_cfg cfg = { .kind = all_kinds[_i], .momentum = 0.5f, .weight_decay = 0.1f,
                         .decay_all = true };
    ck_assert_msg(lb_optim_init(&o, cfg, f.ps, &err) == LB_OK, "%s", err.msg);
    lb_optim_step(&o, f.ps, 0.5f);
    for (int k = 0; k < N_B; k++) {             /* moved towards zero (Adam by lr*sign) */
        const float p0 = P0[N_W + k];
        ck_assert_float_gt((p0 - f.b->data[k]) * p0, 0.0f);
        if (cfg.kind == LB_OPTIM_SGD) ck_assert_float_eq(f.b->data[k], p0 - 0.5f * (0.1f * p0));
    }
    check_buffer_untouched(&f);
    lb_params_free(f.ps);
}
END_TEST

/* Buffers: garbage in their gradient slot, many steps, still untouched (values and moments). */
START_TEST(test_optim_buffers_untouched)        /* _i indexes all_kinds */
{
    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    lb_optim_cfg cfg = { .kind = all_kinds[_i], .momentum = 0.9f, .weight_decay = 1e-2f };
    ck_assert_msg(lb_optim_init(&o, cfg, f.ps, &err) == LB_OK, "%s", err.msg);
    for (int step = 0; step < 10; step++) {
        fixture_set_grads(&f, step);
        lb_optim_step(&o, f.ps, 0.1f);
    }
    check_buffer_untouched(&f);
    ck_assert_float_ne(f.w->data[0], P0[0]);                 /* the others did train */
    lb_params_free(f.ps);
}
END_TEST

/* Hand-computed single steps: SGD's first step is plain gradient descent (buf = g), Adam's
 * first step moves each weight by lr * sign(g) (up to eps). */
START_TEST(test_optim_first_step)
{
    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    ck_assert_int_eq(lb_optim_init(&o, (lb_optim_cfg){ .kind = LB_OPTIM_SGD, .momentum = 0.9f },
                                   f.ps, &err), LB_OK);
    for (int k = 0; k < N_W; k++) f.w->grad[k] = 1.0f;
    lb_optim_step(&o, f.ps, 0.25f);
    for (int k = 0; k < N_W; k++) ck_assert_float_eq(f.w->data[k], P0[k] - 0.25f);
    lb_params_free(f.ps);

    f = fixture_new();
    ck_assert_int_eq(lb_optim_init(&o, (lb_optim_cfg){ .kind = LB_OPTIM_ADAM }, f.ps, &err),
                     LB_OK);
    for (int k = 0; k < N_W; k++) f.w->grad[k] = (k % 2) ? -3.0f : 0.5f;
    lb_optim_step(&o, f.ps, 0.125f);
    for (int k = 0; k < N_W; k++)
        ck_assert_float_eq_tol(f.w->data[k], P0[k] - ((k % 2) ? -0.125f : 0.125f), 1e-6f);
    lb_params_free(f.ps);
}
END_TEST

START_TEST(test_optim_init_defaults)
{
    fixture  f = fixture_new();
    lb_optim o;
    lb_error err = { 0 };
    ck_assert_ptr_null(f.ps->m);
    ck_assert_int_eq(lb_optim_init(&o, (lb_optim_cfg){ .kind = LB_OPTIM_ADAMW }, f.ps, &err),
                     LB_OK);
    ck_assert_ptr_nonnull(f.ps->m);
    ck_assert_ptr_nonnull(f.ps->v);
    ck_assert_float_eq(o.cfg.beta1, 0.9f);
    ck_assert_float_eq(o.cfg.beta2, 0.999f);
    ck_assert_float_eq(o.cfg.eps, 1e-8f);
    ck_assert_int_eq(o.t, 0);
    /* explicit values are kept */
    lb_optim_cfg cfg = { .kind = LB_OPTIM_ADAM, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f };
    ck_assert_int_eq(lb_optim_init(&o, cfg, f.ps, &err), LB_OK);
    ck_assert_float_eq(o.cfg.beta1, 0.8f);
    ck_assert_float_eq(o.cfg.beta2, 0.99f);
    ck_assert_float_eq(o.cfg.eps, 1e-6f);
    lb_params_free(f.ps);
}
END_TEST

typedef struct bad_cfg {
    lb_optim_cfg cfg;
    const char  *field;    /* must appear in the message, with the value */
    const char  *value;
} bad_cfg;

static const bad_cfg bad_cfgs[] = {
    { { .kind = LB_OPTIM_SGD, .momentum = -0.1f }, "momentum", "-0.1" },
    { { .kind = LB_OPTIM_SGD, .momentum = 1.0f }, "momentum", "1" },
    { { .kind = LB_OPTIM_SGD, .momentum = NAN }, "momentum", "nan" },
    { { .kind = LB_OPTIM_SGD, .nesterov = true }, "nesterov", "momentum = 0" },
    { { .kind = LB_OPTIM_SGD, .momentum = 0.9f, .weight_decay = -1e-4f }, "weight_decay",
      "-0.0001" },
    { { .kind = LB_OPTIM_ADAMW, .weight_decay = INFINITY }, "weight_decay", "inf" },
    { { .kind = LB_OPTIM_ADAM, .beta1 = 1.0f }, "beta1", "1" },
    { { .kind = LB_OPTIM_ADAM, .beta1 = -0.5f }, "beta1", "-0.5" },
    { { .kind = LB_OPTIM_ADAMW, .beta2 = 1.5f }, "beta2", "1.5" },
    { { .kind = LB_OPTIM_ADAM, .eps = -1e-8f }, "eps", "-1e-08" },
    { { .kind = (lb_optim_kind)7 }, "kind", "7" },
};
#define N_BAD ((int)(sizeof bad_cfgs / sizeof bad_cfgs[0]))

START_TEST(test_optim_init_errors)               /* _i indexes bad_cfgs */
{
    const bad_cfg *c = &bad_cfgs[_i];
    fixture        f = fixture_new();
    lb_optim       o = { .t = 42 };
    lb_error       err = { 0 };
    ck_assert_int_eq(lb_optim_init(&o, c->cfg, f.ps, &err), LB_ERR_ARG);
    ck_assert_int_eq(err.status, LB_ERR_ARG);
    ck_assert_msg(strstr(err.msg, c->field) != NULL, "no '%s' in: %s", c->field, err.msg);
    ck_assert_msg(strstr(err.msg, c->value) != NULL, "no '%s' in: %s", c->value, err.msg);
    ck_assert_int_eq(o.t, 42);                                /* o untouched on error */
    lb_params_free(f.ps);
}
END_TEST

START_TEST(test_optim_parse_kind)
{
    lb_optim_kind k = LB_OPTIM_SGD;
    lb_error      err = { 0 };
    for (int i = 0; i < 3; i++) {
        const char *name = lb_optim_kind_name(all_kinds[i]);
        ck_assert_int_eq(lb_optim_parse_kind(name, &k, &err), LB_OK);
        ck_assert_int_eq(k, all_kinds[i]);
    }
    ck_assert_str_eq(lb_optim_kind_name(LB_OPTIM_ADAMW), "adamw");
    ck_assert_str_eq(lb_optim_kind_name((lb_optim_kind)9), "unknown");
    k = LB_OPTIM_ADAM;
    ck_assert_int_eq(lb_optim_parse_kind("Adam", &k, &err), LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'Adam'"));
    ck_assert_int_eq(k, LB_OPTIM_ADAM);                       /* out untouched on error */
    ck_assert_int_eq(lb_optim_parse_kind("", &k, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_optim_parse_kind(NULL, &k, &err), LB_ERR_ARG);
}
END_TEST

/* ---- schedules ---------------------------------------------------------------------- */

#define LR_TOL 1e-7f

START_TEST(test_sched_warmup)
{
    lb_schedule s = { .kind = LB_SCHED_CONSTANT, .lr_max = 0.1f, .total = 100, .warmup = 10 };
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 0), 0.01f, LR_TOL);     /* lr_max/warmup   */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 4), 0.05f, LR_TOL);     /* (4+1)/10        */
    ck_assert_float_eq(lb_schedule_lr(&s, 9), 0.1f);                   /* exact at the end */
    ck_assert_float_eq(lb_schedule_lr(&s, 10), 0.1f);
    ck_assert_float_eq(lb_schedule_lr(&s, 99), 0.1f);
    ck_assert_float_eq(lb_schedule_lr(&s, 1000), 0.1f);
    ck_assert_float_eq_tol(lb_schedule_lr(&s, -5), 0.01f, LR_TOL);    /* clamped to 0    */
    s.warmup = 0;
    ck_assert_float_eq(lb_schedule_lr(&s, 0), 0.1f);                   /* no warm-up      */
}
END_TEST

START_TEST(test_sched_cosine)
{
    lb_schedule s = { .kind = LB_SCHED_COSINE, .lr_max = 0.1f, .lr_min = 0.001f, .total = 110,
                      .warmup = 10 };
    ck_assert_float_eq(lb_schedule_lr(&s, 9), 0.1f);                   /* warm-up end     */
    ck_assert_float_eq(lb_schedule_lr(&s, 10), 0.1f);                  /* p = 0           */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 60), (0.1f + 0.001f) / 2, LR_TOL);  /* p=1/2 */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 35),                     /* p = 1/4         */
                           0.001f + 0.099f * (1.0f + sqrtf(0.5f)) / 2, LR_TOL);
    ck_assert_float_gt(lb_schedule_lr(&s, 109), 0.001f);
    ck_assert_float_eq(lb_schedule_lr(&s, 110), 0.001f);               /* end = lr_min    */
    ck_assert_float_eq(lb_schedule_lr(&s, 5000), 0.001f);              /* clamped         */
    /* monotone non-increasing after warm-up */
    for (int64_t t = 10; t < 110; t++)
        ck_assert_float_le(lb_schedule_lr(&s, t + 1), lb_schedule_lr(&s, t));
}
END_TEST

START_TEST(test_sched_step)
{
    lb_schedule s = { .kind = LB_SCHED_STEP, .lr_max = 0.1f, .total = 100, .warmup = 5,
                      .step_size = 30, .gamma = 0.1f };
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 0), 0.02f, LR_TOL);
    ck_assert_float_eq(lb_schedule_lr(&s, 5), 0.1f);
    ck_assert_float_eq(lb_schedule_lr(&s, 34), 0.1f);                  /* just before     */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 35), 0.01f, LR_TOL);     /* first decay     */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 64), 0.01f, LR_TOL);
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 65), 0.001f, 1e-9f);     /* second decay    */
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 99), 0.0001f, 1e-10f);
    ck_assert_float_eq(lb_schedule_lr(&s, 500), lb_schedule_lr(&s, 100));  /* clamped     */
}
END_TEST

START_TEST(test_sched_onecycle)
{
    /* warmup 0 -> 30% of 100 = 30 steps */
    lb_schedule s = { .kind = LB_SCHED_ONECYCLE, .lr_max = 0.2f, .lr_min = 0.0f, .total = 100 };
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 0), 0.2f / 30, LR_TOL);
    ck_assert_float_eq(lb_schedule_lr(&s, 29), 0.2f);
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 65), 0.1f, LR_TOL);      /* midpoint of 70  */
    ck_assert_float_eq(lb_schedule_lr(&s, 100), 0.0f);
    ck_assert_float_eq(lb_schedule_lr(&s, 200), 0.0f);
    s.warmup = 10;                                                     /* explicit warm-up */
    ck_assert_float_eq(lb_schedule_lr(&s, 9), 0.2f);
    ck_assert_float_eq_tol(lb_schedule_lr(&s, 55), 0.1f, LR_TOL);
}
END_TEST

START_TEST(test_sched_total_le_warmup)
{
    const lb_sched_kind kinds[] = { LB_SCHED_CONSTANT, LB_SCHED_COSINE, LB_SCHED_STEP,
                                    LB_SCHED_ONECYCLE };
    for (int i = 0; i < 4; i++) {
        lb_schedule s = { .kind = kinds[i], .lr_max = 0.1f, .lr_min = 0.01f, .total = 10,
                          .warmup = 20, .step_size = 1, .gamma = 0.5f };
        ck_assert_float_eq_tol(lb_schedule_lr(&s, 9), 0.05f, LR_TOL);  /* still warming  */
        ck_assert_float_eq(lb_schedule_lr(&s, 19), 0.1f);
        ck_assert_float_eq(lb_schedule_lr(&s, 20), 0.1f);              /* then lr_max    */
        ck_assert_float_eq(lb_schedule_lr(&s, 1000), 0.1f);
        s.total = 0;                                                   /* never set       */
        s.warmup = 0;
        ck_assert_float_eq(lb_schedule_lr(&s, 0), 0.1f);
        ck_assert_float_eq(lb_schedule_lr(&s, 7), 0.1f);
    }
}
END_TEST

START_TEST(test_sched_validate)
{
    lb_error    err = { 0 };
    lb_schedule ok = { .kind = LB_SCHED_STEP, .lr_max = 0.1f, .total = 100, .step_size = 10,
                       .gamma = 0.5f };
    ck_assert_int_eq(lb_schedule_validate(&ok, &err), LB_OK);
    struct { lb_schedule s; const char *field; } bad[] = {
        { { .kind = (lb_sched_kind)9, .lr_max = 0.1f }, "kind" },
        { { .kind = LB_SCHED_COSINE, .lr_max = 0.0f }, "lr_max" },
        { { .kind = LB_SCHED_COSINE, .lr_max = NAN }, "lr_max" },
        { { .kind = LB_SCHED_COSINE, .lr_max = 0.1f, .lr_min = 0.2f }, "lr_min" },
        { { .kind = LB_SCHED_COSINE, .lr_max = 0.1f, .lr_min = -0.1f }, "lr_min" },
        { { .kind = LB_SCHED_COSINE, .lr_max = 0.1f, .total = -1 }, "total" },
        { { .kind = LB_SCHED_COSINE, .lr_max = 0.1f, .warmup = -3 }, "warmup" },
        { { .kind = LB_SCHED_STEP, .lr_max = 0.1f, .gamma = 0.5f }, "step_size" },
        { { .kind = LB_SCHED_STEP, .lr_max = 0.1f, .step_size = 5, .gamma = -0.5f }, "gamma" },
        { { .kind = LB_SCHED_STEP, .lr_max = 0.1f, .step_size = 5, .gamma = INFINITY }, "gamma" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(lb_schedule_validate(&bad[i].s, &err), LB_ERR_ARG);
        ck_assert_msg(strstr(err.msg, bad[i].field) != NULL, "row %zu: no '%s' in: %s", i,
                      bad[i].field, err.msg);
    }
}
END_TEST

START_TEST(test_sched_parse_kind)
{
    const char *names[] = { "constant", "cosine", "step", "onecycle" };
    lb_sched_kind k = LB_SCHED_CONSTANT;
    lb_error      err = { 0 };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(lb_schedule_parse_kind(names[i], &k, &err), LB_OK);
        ck_assert_int_eq(k, i);
        ck_assert_str_eq(lb_schedule_kind_name(k), names[i]);
    }
    ck_assert_str_eq(lb_schedule_kind_name((lb_sched_kind)-1), "unknown");
    k = LB_SCHED_STEP;
    ck_assert_int_eq(lb_schedule_parse_kind("linear", &k, &err), LB_ERR_ARG);
    ck_assert_int_eq(err.status, LB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'linear'"));
    ck_assert_int_eq(k, LB_SCHED_STEP);
    ck_assert_int_eq(lb_schedule_parse_kind("Cosine", &k, &err), LB_ERR_ARG);
    ck_assert_int_eq(lb_schedule_parse_kind(NULL, &k, &err), LB_ERR_ARG);
}
END_TEST

Suite *train_optim_suite(void)
{
    Suite *s = suite_create("train_optim");

    TCase *tc = tcase_create("optim");
    tcase_add_loop_test(tc, test_optim_golden, 0, N_GOLDEN);
    tcase_add_loop_test(tc, test_optim_no_decay, 0, 3);
    tcase_add_loop_test(tc, test_optim_decay_all, 0, 3);
    tcase_add_loop_test(tc, test_optim_buffers_untouched, 0, 3);
    tcase_add_test(tc, test_optim_first_step);
    tcase_add_test(tc, test_optim_init_defaults);
    tcase_add_loop_test(tc, test_optim_init_errors, 0, N_BAD);
    tcase_add_test(tc, test_optim_parse_kind);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_test(tc, test_sched_warmup);
    tcase_add_test(tc, test_sched_cosine);
    tcase_add_test(tc, test_sched_step);
    tcase_add_test(tc, test_sched_onecycle);
    tcase_add_test(tc, test_sched_total_le_warmup);
    tcase_add_test(tc, test_sched_validate);
    tcase_add_test(tc, test_sched_parse_kind);
    suite_add_tcase(s, tc);
    return s;
}
