//! `libpcgrad` for the Python wheel: re-exports the C library of the `capi`
//! crate unchanged, so the Python package calls exactly the functions that
//! C users link (include/pcgrad.h), and makes the same file the extension
//! module `pcgrad._native`.
//!
//! The module has two functions, `merge_flat` and `project_flat`: the common
//! call of `pcgrad.merge` / `pcgrad.project` (a C-contiguous float32 or
//! float64 (T, N) numpy array and plain options) straight into
//! `pcgrad_merge_flat` / `pcgrad_project_flat` (or their `_f64` forms),
//! which through ctypes costs several microseconds of
//! argument conversion per call. They return `None`
//! whenever the input is not of that kind or the library reports a status:
//! the Python side then takes its general path, which checks every argument
//! and raises the exception naming it (a failed call changes no buffer, so
//! the repeat is harmless). The GIL is released around the library call.

pub use pcgrad_capi::*;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

/// The leading fields of NumPy's `PyArrayObject_fields` (numpy/ndarraytypes.h,
/// the same layout in every NumPy since 1.7, 2.x included; read only from
/// objects whose type is exactly `numpy.ndarray`).
#[repr(C)]
struct ArrayFields {
    ob_base: ffi::PyObject,
    data: *mut c_char,
    nd: c_int,
    dimensions: *mut isize,
    strides: *mut isize,
    base: *mut ffi::PyObject,
    descr: *mut ffi::PyObject,
    flags: c_int,
}

const NPY_ARRAY_C_CONTIGUOUS: c_int = 0x0001;
const NPY_ARRAY_ALIGNED: c_int = 0x0100;
const NPY_ARRAY_WRITEABLE: c_int = 0x0400;

/// `PyArray_NewFromDescr`, entry 94 of NumPy's C-API table (`_ARRAY_API`,
/// stable since NumPy 1.0).
type NewFromDescr = unsafe extern "C" fn(
    *mut ffi::PyTypeObject,
    *mut ffi::PyObject,
    c_int,
    *const isize,
    *const isize,
    *mut c_void,
    c_int,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// What `_init` records: `numpy.ndarray`, the float32 and float64 dtypes
/// (kept alive for the process by the references held here) and
/// `PyArray_NewFromDescr`.
struct Numpy {
    ndarray: Py<PyAny>,
    float32: Py<PyAny>,
    float64: Py<PyAny>,
    new_from_descr: NewFromDescr,
}

/// The element type of a fast call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Elem {
    F32,
    F64,
}

static NUMPY: OnceLock<Numpy> = OnceLock::new();

thread_local! {
    /// Per-thread scratch of the flat calls (one call per thread at a time).
    static WORKSPACE: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl Numpy {
    /// (T, N) when `obj` is exactly a numpy.ndarray of the float32 or
    /// float64 dtype, 2-D, C-contiguous and aligned (and writable when
    /// `writable`), with T, N >= 1; then also its data pointer and type.
    fn float_2d(
        &self,
        obj: &Bound<'_, PyAny>,
        writable: bool,
    ) -> Option<(usize, usize, *mut c_char, Elem)> {
        if obj.get_type().as_ptr() != self.ndarray.as_ptr() {
            return None;
        }
        // SAFETY: the object's type is exactly numpy.ndarray, so it is a
        // PyArrayObject whose leading fields are ArrayFields; `dimensions`
        // holds `nd` = 2 entries. The GIL is held (through `obj`).
        unsafe {
            let a = &*(obj.as_ptr() as *const ArrayFields);
            let need = NPY_ARRAY_C_CONTIGUOUS
                | NPY_ARRAY_ALIGNED
                | if writable { NPY_ARRAY_WRITEABLE } else { 0 };
            let elem = if a.descr == self.float32.as_ptr() {
                Elem::F32
            } else if a.descr == self.float64.as_ptr() {
                Elem::F64
            } else {
                return None;
            };
            if a.nd != 2 || a.flags & need != need || a.data.is_null() {
                return None;
            }
            let (t, n) = (*a.dimensions, *a.dimensions.add(1));
            if t < 1 || n < 1 {
                return None;
            }
            Some((t as usize, n as usize, a.data, elem))
        }
    }

    /// A new uninitialised C-contiguous array of `n` values of `elem` and
    /// its data pointer.
    fn empty<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        elem: Elem,
    ) -> PyResult<(Bound<'py, PyAny>, *mut c_char)> {
        let dims = [n as isize];
        let descr = match elem {
            Elem::F32 => self.float32.as_ptr(),
            Elem::F64 => self.float64.as_ptr(),
        };
        // SAFETY: PyArray_NewFromDescr with the ndarray type, a descr whose
        // reference it steals (hence the incref), one dimension, no strides,
        // data or base: a new reference, or NULL with an exception set.
        let obj = unsafe {
            ffi::Py_INCREF(descr);
            let o = (self.new_from_descr)(
                self.ndarray.as_ptr() as *mut ffi::PyTypeObject,
                descr,
                1,
                dims.as_ptr(),
                std::ptr::null(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
            );
            Bound::from_owned_ptr_or_err(py, o)?
        };
        // SAFETY: a new numpy.ndarray: its leading fields are ArrayFields.
        let data = unsafe { (*(obj.as_ptr() as *const ArrayFields)).data };
        Ok((obj, data))
    }
}

/// Records `numpy.ndarray`, `numpy.dtype("float32")`, `numpy.dtype("float64")` and NumPy's C-API table
/// (the `_ARRAY_API` capsule), then checks them on a small array: returns
/// whether the fast entry points are enabled (else they always return None).
#[pyfunction]
fn _init(
    py: Python<'_>,
    ndarray: Py<PyAny>,
    float32: Py<PyAny>,
    float64: Py<PyAny>,
    api: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    // SAFETY: PyCapsule_GetPointer checks that `api` is a capsule (NumPy's
    // is unnamed) and returns its pointer, the C-API table of void*.
    let table = unsafe { ffi::PyCapsule_GetPointer(api.as_ptr(), std::ptr::null()) }
        as *const *const c_void;
    if table.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: entry 94 of the table is PyArray_NewFromDescr, whose C
    // prototype NewFromDescr transcribes.
    let new_from_descr: NewFromDescr =
        unsafe { std::mem::transmute::<*const c_void, NewFromDescr>(*table.add(94)) };
    let np = Numpy {
        ndarray,
        float32,
        float64,
        new_from_descr,
    };
    // The self-check: a (1, 3) array of each type made this way must read
    // back as one.
    let mut ok = true;
    for (elem, dtype) in [(Elem::F32, &np.float32), (Elem::F64, &np.float64)] {
        let (one, _) = np.empty(py, 3, elem)?;
        let two = one.call_method1("reshape", (1, 3))?;
        ok &= one.getattr("shape")?.extract::<(usize,)>()? == (3,)
            && one.getattr("dtype")?.is(dtype.bind(py))
            && np.float_2d(&two, true).map(|(t, n, _, e)| (t, n, e)) == Some((1, 3, elem));
    }
    if ok {
        let _ = NUMPY.set(np);
    }
    Ok(ok && NUMPY.get().is_some())
}

/// The library config of a call whose options are plain: `mode` and
/// `reduction` one of their names, `order="fixed"`, `threads` an exact
/// non-negative int, `check_finite` exactly True or False, and every other option at its
/// default (`segments`, `has_grad`, `rng`, `out` None; `stats` False).
/// `None` for anything else, which the general path checks (and names).
#[allow(clippy::too_many_arguments)]
fn plain_config(
    mode: &Bound<'_, PyAny>,
    order: &Bound<'_, PyAny>,
    reduction: &Bound<'_, PyAny>,
    segments: &Bound<'_, PyAny>,
    has_grad: &Bound<'_, PyAny>,
    rng: &Bound<'_, PyAny>,
    threads: &Bound<'_, PyAny>,
    check_finite: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    stats: &Bound<'_, PyAny>,
) -> Option<pcgrad_config> {
    // SAFETY: the addresses of the None, True and False singletons.
    let (none, t, f) = unsafe { (ffi::Py_None(), ffi::Py_True(), ffi::Py_False()) };
    if segments.as_ptr() != none
        || has_grad.as_ptr() != none
        || rng.as_ptr() != none
        || out.as_ptr() != none
        || stats.as_ptr() != f
    {
        return None;
    }
    let check_finite = if check_finite.as_ptr() == t {
        1
    } else if check_finite.as_ptr() == f {
        0
    } else {
        return None;
    };
    if !threads.is_exact_instance_of::<PyInt>() {
        return None;
    }
    let threads = threads.extract::<usize>().ok()?;
    let mode = match mode.downcast::<PyString>().ok()?.to_str().ok()? {
        "sequential" => PCGRAD_MODE_SEQUENTIAL,
        "simultaneous" => PCGRAD_MODE_SIMULTANEOUS,
        _ => return None,
    };
    if order.downcast::<PyString>().ok()?.to_str().ok()? != "fixed" {
        return None;
    }
    let reduction = match reduction.downcast::<PyString>().ok()?.to_str().ok()? {
        "mean" => PCGRAD_REDUCTION_MEAN,
        "sum" => PCGRAD_REDUCTION_SUM,
        _ => return None,
    };
    Some(pcgrad_config {
        mode,
        order: PCGRAD_ORDER_FIXED,
        reduction,
        check_finite,
        matrix: PCGRAD_MATRIX_GRAM,
        threads,
        order_table: std::ptr::null(),
        order_table_len: 0,
        rng: std::ptr::null_mut(),
    })
}

fn call<'py>(
    py: Python<'py>,
    cfg: pcgrad_config,
    grads: &Bound<'py, PyAny>,
    project: bool,
    want_merged: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(np) = NUMPY.get() else {
        return Ok(None);
    };
    let Some((t, n, gp, elem)) = np.float_2d(grads, project) else {
        return Ok(None);
    };
    let (out, mp) = if want_merged {
        let (o, p) = np.empty(py, n, elem)?;
        (Some(o), p as usize)
    } else {
        (None, 0)
    };
    let gp = gp as usize;
    let status = WORKSPACE.with(|ws| {
        let mut ws = ws.borrow_mut();
        let mut wl = 0usize;
        // SAFETY: `wl` is a writable usize.
        unsafe { pcgrad_workspace_len(t, &mut wl) };
        if ws.len() < wl {
            ws.resize(wl, 0.0);
        }
        let (wp, wlen) = (ws.as_mut_ptr() as usize, ws.len());
        let cfg = &cfg as *const pcgrad_config as usize;
        py.allow_threads(|| {
            let mlen = if mp != 0 { n } else { 0 };
            use std::ptr::null as nul;
            let (cfg, ws) = (cfg as *const pcgrad_config, wp as *mut f64);
            use std::ptr::null_mut as none;
            // SAFETY: `cfg` is the address of a pcgrad_config on this frame
            // (no table, no rng); `gp` points at the T * N values of `grads`
            // and `mp` (or 0: NULL) at the N values of `out`, both of
            // `elem`, referenced by this call until it returns; `wp` at
            // `wlen` doubles of this thread's workspace, borrowed for the
            // call.
            unsafe {
                match (elem, project) {
                    (Elem::F32, true) => pcgrad_project_flat(
                        cfg,
                        gp as *mut f32,
                        t * n,
                        nul(),
                        0,
                        nul(),
                        0,
                        t,
                        n,
                        mp as *mut f32,
                        mlen,
                        none(),
                        none(),
                        0,
                        ws,
                        wlen,
                    ),
                    (Elem::F32, false) => pcgrad_merge_flat(
                        cfg,
                        gp as *const f32,
                        t * n,
                        nul(),
                        0,
                        nul(),
                        0,
                        t,
                        n,
                        mp as *mut f32,
                        mlen,
                        none(),
                        none(),
                        0,
                        ws,
                        wlen,
                    ),
                    (Elem::F64, true) => pcgrad_project_flat_f64(
                        cfg,
                        gp as *mut f64,
                        t * n,
                        nul(),
                        0,
                        nul(),
                        0,
                        t,
                        n,
                        mp as *mut f64,
                        mlen,
                        none(),
                        none(),
                        0,
                        ws,
                        wlen,
                    ),
                    (Elem::F64, false) => pcgrad_merge_flat_f64(
                        cfg,
                        gp as *const f64,
                        t * n,
                        nul(),
                        0,
                        nul(),
                        0,
                        t,
                        n,
                        mp as *mut f64,
                        mlen,
                        none(),
                        none(),
                        0,
                        ws,
                        wlen,
                    ),
                }
            }
        })
    });
    if status as i32 != 0 {
        return Ok(None);
    }
    Ok(Some(match out {
        Some(o) => o,
        None => PyBool::new(py, true).to_owned().into_any(),
    }))
}

/// `pcgrad.merge(grads, ...)` for the common call: `grads` exactly a
/// C-contiguous aligned float32 or float64 (T, N) numpy array with T, N >= 1
/// and plain options (the arguments of `pcgrad.merge` in its order). Returns
/// the merged gradient (a new array of the same type), or `None` for any other call or a library
/// status: the caller then takes the general path.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn merge_flat<'py>(
    py: Python<'py>,
    grads: &Bound<'py, PyAny>,
    mode: &Bound<'py, PyAny>,
    order: &Bound<'py, PyAny>,
    reduction: &Bound<'py, PyAny>,
    segments: &Bound<'py, PyAny>,
    has_grad: &Bound<'py, PyAny>,
    rng: &Bound<'py, PyAny>,
    threads: &Bound<'py, PyAny>,
    check_finite: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
    stats: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(cfg) = plain_config(
        mode,
        order,
        reduction,
        segments,
        has_grad,
        rng,
        threads,
        check_finite,
        out,
        stats,
    ) else {
        return Ok(None);
    };
    call(py, cfg, grads, false, true)
}

/// `pcgrad.project(grads, ...)` for the common call, as `merge_flat`, on a
/// writable array (projected in place) and with `merged` exactly True or
/// False: the merged gradient (`True` with `merged=False`), or `None`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn project_flat<'py>(
    py: Python<'py>,
    grads: &Bound<'py, PyAny>,
    mode: &Bound<'py, PyAny>,
    order: &Bound<'py, PyAny>,
    reduction: &Bound<'py, PyAny>,
    segments: &Bound<'py, PyAny>,
    has_grad: &Bound<'py, PyAny>,
    rng: &Bound<'py, PyAny>,
    threads: &Bound<'py, PyAny>,
    check_finite: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
    stats: &Bound<'py, PyAny>,
    merged: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(cfg) = plain_config(
        mode,
        order,
        reduction,
        segments,
        has_grad,
        rng,
        threads,
        check_finite,
        out,
        stats,
    ) else {
        return Ok(None);
    };
    // SAFETY: the addresses of the True and False singletons.
    let want = if merged.as_ptr() == unsafe { ffi::Py_True() } {
        true
    } else if merged.as_ptr() == unsafe { ffi::Py_False() } {
        false
    } else {
        return Ok(None);
    };
    call(py, cfg, grads, true, want)
}

/// The extension module `pcgrad._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_init, m)?)?;
    m.add_function(wrap_pyfunction!(merge_flat, m)?)?;
    m.add_function(wrap_pyfunction!(project_flat, m)?)?;
    Ok(())
}
