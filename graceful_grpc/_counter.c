/*
 * graceful_grpc._counter: a lock-free in-flight counter.
 *
 * C twin of graceful_grpc/_counter_py.py; both must behave identically (same methods, exceptions,
 * messages and repr).  The value is a C11 atomic, so incr()/decr() never lose an update even when
 * called from several threads; on_zero is swapped atomically and read under a critical section on
 * free-threaded builds, so a concurrent setter cannot free it while decr() is calling it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>

#ifndef Py_BEGIN_CRITICAL_SECTION
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

typedef struct {
    PyObject_HEAD
    atomic_llong value;
    _Atomic(PyObject *) on_zero;
} CounterObject;

typedef struct {
    PyTypeObject *counter_type;
} module_state;

static PyObject *
counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Counter", kwlist)) {
        return NULL;
    }
    CounterObject *self = (CounterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    atomic_init(&self->value, 0);
    atomic_init(&self->on_zero, NULL);
    return (PyObject *)self;
}

static int
counter_traverse(CounterObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(atomic_load(&self->on_zero));
    return 0;
}

static int
counter_clear(CounterObject *self)
{
    PyObject *old = atomic_exchange(&self->on_zero, NULL);
    Py_XDECREF(old);
    return 0;
}

static void
counter_dealloc(CounterObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)counter_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
counter_incr(CounterObject *self, PyObject *Py_UNUSED(ignored))
{
    long long current = atomic_load_explicit(&self->value, memory_order_relaxed);
    do {
        if (current == LLONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "Counter.incr() would overflow");
            return NULL;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &self->value, &current, current + 1, memory_order_acq_rel, memory_order_relaxed));
    Py_RETURN_NONE;
}

/* The transition to zero, and only it, calls on_zero (outside any lock). */
static PyObject *
decrement(CounterObject *self)
{
    long long current = atomic_load_explicit(&self->value, memory_order_relaxed);
    do {
        if (current == 0) {
            PyErr_SetString(PyExc_ValueError, "Counter.decr() called at zero");
            return NULL;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &self->value, &current, current - 1, memory_order_acq_rel, memory_order_relaxed));
    if (current != 1) {
        Py_RETURN_NONE;
    }
    PyObject *callback;
    Py_BEGIN_CRITICAL_SECTION(self);
    callback = atomic_load(&self->on_zero);
    Py_XINCREF(callback);
    Py_END_CRITICAL_SECTION();
    if (callback == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *result = PyObject_CallNoArgs(callback);
    Py_DECREF(callback);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *
counter_decr(CounterObject *self, PyObject *Py_UNUSED(ignored))
{
    return decrement(self);
}

static PyObject *
counter_done(CounterObject *self, PyObject *Py_UNUSED(call))
{
    return decrement(self);
}

static PyObject *
counter_get_value(CounterObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(atomic_load(&self->value));
}

static PyObject *
counter_get_on_zero(CounterObject *self, void *Py_UNUSED(closure))
{
    PyObject *callback;
    Py_BEGIN_CRITICAL_SECTION(self);
    callback = atomic_load(&self->on_zero);
    Py_XINCREF(callback);
    Py_END_CRITICAL_SECTION();
    if (callback == NULL) {
        Py_RETURN_NONE;
    }
    return callback;
}

static int
counter_set_on_zero(CounterObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == Py_None) {
        value = NULL;
    }
    if (value != NULL && !PyCallable_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "on_zero must be callable or None");
        return -1;
    }
    Py_XINCREF(value);
    PyObject *old;
    Py_BEGIN_CRITICAL_SECTION(self);
    old = atomic_exchange(&self->on_zero, value);
    Py_END_CRITICAL_SECTION();
    Py_XDECREF(old);
    return 0;
}

static PyObject *
counter_repr(CounterObject *self)
{
    return PyUnicode_FromFormat("<Counter value=%lld>", (long long)atomic_load(&self->value));
}

static PyMethodDef counter_methods[] = {
    {"incr", (PyCFunction)counter_incr, METH_NOARGS, "Add one to the value."},
    {"decr", (PyCFunction)counter_decr, METH_NOARGS,
     "Subtract one; raise ValueError at zero; call on_zero on reaching zero."},
    {"done", (PyCFunction)counter_done, METH_O,
     "decr() taking (and ignoring) one argument, for call.add_done_callback."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef counter_getset[] = {
    {"value", (getter)counter_get_value, NULL, "The current value.", NULL},
    {"on_zero", (getter)counter_get_on_zero, (setter)counter_set_on_zero,
     "Called with no arguments after each decrement that reaches zero, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot counter_slots[] = {
    {Py_tp_doc, "A thread-safe non-negative counter with a callback on reaching zero."},
    {Py_tp_new, counter_new},
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_traverse, counter_traverse},
    {Py_tp_clear, counter_clear},
    {Py_tp_repr, counter_repr},
    {Py_tp_methods, counter_methods},
    {Py_tp_getset, counter_getset},
    {0, NULL},
};

static PyType_Spec counter_spec = {
    .name = "graceful_grpc._counter.Counter",
    .basicsize = sizeof(CounterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = counter_slots,
};

static int
module_exec(PyObject *module)
{
    module_state *state = PyModule_GetState(module);
    state->counter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &counter_spec, NULL);
    if (state->counter_type == NULL) {
        return -1;
    }
    return PyModule_AddType(module, state->counter_type);
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *state = PyModule_GetState(module);
    Py_VISIT(state->counter_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    module_state *state = PyModule_GetState(module);
    Py_CLEAR(state->counter_type);
    return 0;
}

static void
module_free(void *module)
{
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef counter_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "graceful_grpc._counter",
    .m_doc = "C11-atomic implementation of graceful_grpc's in-flight counter.",
    .m_size = sizeof(module_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__counter(void)
{
    return PyModuleDef_Init(&counter_module);
}
