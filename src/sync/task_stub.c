/* Stand-in for the task runtime (src/task) until it lands: there are no tasks, so
 * sl__task_self() is always NULL and park/unpark are never reached (every wait takes the
 * thread path). Compiles to nothing once src/task/task_int.h exists. */
#include <stddef.h>

#include "sync/task_link.h"

#if !__has_include("task/task_int.h")
struct sl_task *sl__task_self(void)
{
    return NULL;
}

void sl__task_park(void) {}

void sl__task_unpark(struct sl_task *t)
{
    (void)t;
}
#endif
