/* sluice: Go's web-concurrency toolkit, in C11. This header includes every public module. */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include "sluice/common.h"
#include "sluice/error.h"
#include "sluice/clock.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/ctx.h"
#include "sluice/task.h"
#include "sluice/wg.h"
#include "sluice/once.h"
#include "sluice/sem.h"
#include "sluice/chan.h"
#include "sluice/group.h"
#include "sluice/pool.h"
#include "sluice/map.h"
#include "sluice/ipkey.h"
#include "sluice/limiter.h"
#include "sluice/keyed.h"
#include "sluice/ratelimit.h"
#include "sluice/redis_limiter.h"
#include "sluice/redis_jobs.h"
#include "sluice/router.h"
#include "sluice/server.h"
#include "sluice/mux.h"
#include "sluice/mw_ratelimit.h"
#include "sluice/mw_metrics.h"
#include "sluice/client.h"

#endif /* SLUICE_SLUICE_H */
