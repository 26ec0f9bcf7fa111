//! numpy in and out: owned Rust vectors become numpy arrays without a copy; inputs are
//! converted with `numpy.ascontiguousarray` and checked.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{Element, PyArrayDescrMethods, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::value_error;

/// `vec` as a numpy array of `shape`, without copying (numpy takes ownership of the buffer).
pub fn array<'py, T: Element>(
    py: Python<'py>,
    vec: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), vec)
        .map_err(|e| value_error(format!("internal shape error: {e}")))?;
    Ok(PyArrayDyn::from_owned_array(py, a))
}

/// `obj` as a C-contiguous array of `T`, converting the dtype (numbers, lists, other float
/// widths). `what` names the argument in errors.
pub fn input<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("ascontiguousarray", (obj, numpy::dtype::<T>(py)))
        .map_err(|e| value_error(format!("{what}: cannot be read as an array ({e})")))?;
    arr.extract::<PyReadonlyArrayDyn<'py, T>>()
        .map_err(|e| value_error(format!("{what}: not a numeric array ({e})")))
}

/// `obj` as a C-contiguous `uint8` array: only arrays (or lists) of dtype `uint8` are accepted,
/// so that frames in [0, 1] floats are not silently truncated to zeros.
pub fn input_u8<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArrayDyn<'py, u8>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let dtype = arr.getattr("dtype")?;
    if !dtype.eq(numpy::dtype::<u8>(py))? {
        let name: String = dtype.str()?.extract()?;
        return Err(value_error(format!(
            "{what} must be uint8 grayscale frames (0..255, as the environment renders them), got dtype {name}"
        )));
    }
    input::<u8>(&arr, what)
}

/// The shape of an input array.
pub fn shape<T: Element>(a: &PyReadonlyArrayDyn<'_, T>) -> Vec<usize> {
    a.shape().to_vec()
}

/// A shape as numpy prints it: `(4,)`, `(5, 1)`.
pub fn py_shape(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The contiguous data of an input array.
pub fn data<'a, T: Element>(a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|e| value_error(format!("array is not contiguous: {e}")))
}

/// Whether `dtype`'s name is what numpy calls `T` (for error messages about exact dtypes).
pub fn dtype_name(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr("dtype")
        .and_then(|d| d.str())
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| "?".into())
}

/// `obj` as an array of exactly dtype `T` (no conversion), or a `ValueError` naming `what` and
/// the dtype it has; used where the dataset format fixes the dtype.
pub fn exact<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    expected: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let py = obj.py();
    match obj.cast::<PyArrayDyn<T>>() {
        Ok(a) if a.dtype().is_equiv_to(&numpy::dtype::<T>(py)) => {
            let np = py.import("numpy")?;
            let c = np.call_method1("ascontiguousarray", (a,))?;
            Ok(c.extract::<PyReadonlyArrayDyn<'py, T>>()?)
        }
        _ => Err(value_error(format!(
            "{what} must be a numpy array of dtype {expected}, got {}",
            if obj.hasattr("dtype").unwrap_or(false) {
                format!("dtype {}", dtype_name(obj))
            } else {
                obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
            }
        ))),
    }
}
