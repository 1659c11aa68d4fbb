/* Private to sluice: the one intrusive doubly linked list (head and tail) that the modules'
 * queues share — waiter queues (sync's sl__cond, the resource pool's waiters, the HTTP
 * client's per-host queue) and idle lists — instead of an unlink written out in each.
 *
 * A node is embedded in its owner's struct; SL__CONTAINER_OF gets the owner back. The list
 * does no allocation and no locking: the owner's lock guards it, and its header says which.
 * A removed node has prev == next == NULL; the list cannot tell a lone linked node from an
 * unlinked one, so owners that need to know keep their own flag. Threads: the owner's. */
#ifndef SLUICE_BASE_LIST_INT_H
#define SLUICE_BASE_LIST_INT_H

#include <stdbool.h>
#include <stddef.h>

#define SL__CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct sl__dnode {
    struct sl__dnode *prev, *next;
} sl__dnode;

typedef struct sl__dlist {
    sl__dnode *head, *tail;
} sl__dlist;

#define SL__DLIST_INIT \
    {                  \
        NULL, NULL     \
    }

static inline bool sl__dlist_empty(const sl__dlist *l)
{
    return l->head == NULL;
}

/* Appends n (FIFO order: pop_front returns the oldest). */
static inline void sl__dlist_push_back(sl__dlist *l, sl__dnode *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

/* Prepends n (LIFO order at the head). */
static inline void sl__dlist_push_front(sl__dlist *l, sl__dnode *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Unlinks n, which must be on l, and clears its links. O(1). */
static inline void sl__dlist_remove(sl__dlist *l, sl__dnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* Unlinks and returns the head, or NULL when l is empty. */
static inline sl__dnode *sl__dlist_pop_front(sl__dlist *l)
{
    sl__dnode *n = l->head;
    if (n) sl__dlist_remove(l, n);
    return n;
}

#endif /* SLUICE_BASE_LIST_INT_H */
