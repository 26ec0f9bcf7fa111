//! Finite-difference twins of the analytic derivatives (tests only).

use crate::{Cost, Dynamics, Quadratization};

/// Central-difference Jacobians `(A: [n, n], B: [n, m])` of `d.step` at `(x, u)`.
pub fn fd_dynamics<D: Dynamics>(d: &D, x: &[f64], u: &[f64], h: f64) -> (Vec<f64>, Vec<f64>) {
    let (n, m) = (d.state_dim(), d.control_dim());
    let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n * m]);
    let (mut fp, mut fm) = (vec![0.0; n], vec![0.0; n]);
    for j in 0..n {
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[j] += h;
        xm[j] -= h;
        d.step(&xp, u, &mut fp);
        d.step(&xm, u, &mut fm);
        for i in 0..n {
            a[i * n + j] = (fp[i] - fm[i]) / (2.0 * h);
        }
    }
    for j in 0..m {
        let (mut up, mut um) = (u.to_vec(), u.to_vec());
        up[j] += h;
        um[j] -= h;
        d.step(x, &up, &mut fp);
        d.step(x, &um, &mut fm);
        for i in 0..n {
            b[i * m + j] = (fp[i] - fm[i]) / (2.0 * h);
        }
    }
    (a, b)
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: analytic {got}, finite difference {want}"
    );
}

/// Checks the running and terminal gradients against central differences of the values,
/// and the Hessians against central differences of the analytic gradients.
pub fn check_cost_derivatives<C: Cost>(c: &C, x: &[f64], u: &[f64], h: f64) {
    let (n, m) = (x.len(), u.len());
    let mut q = Quadratization::zeros(n, m);
    c.quadratize(0, x, u, &mut q);
    assert_close("l", q.l, c.running(0, x, u), 1e-12);
    let mut qp = Quadratization::zeros(n, m);
    let mut qm = Quadratization::zeros(n, m);
    // Joint variable z = [x, u].
    for j in 0..n + m {
        let (mut xp, mut xm, mut up, mut um) = (x.to_vec(), x.to_vec(), u.to_vec(), u.to_vec());
        if j < n {
            xp[j] += h;
            xm[j] -= h;
        } else {
            up[j - n] += h;
            um[j - n] -= h;
        }
        let dl = (c.running(0, &xp, &up) - c.running(0, &xm, &um)) / (2.0 * h);
        let grad = if j < n { q.lx[j] } else { q.lu[j - n] };
        assert_close(&format!("dl/dz[{j}]"), grad, dl, 1e-6);
        c.quadratize(0, &xp, &up, &mut qp);
        c.quadratize(0, &xm, &um, &mut qm);
        for i in 0..n {
            let fd = (qp.lx[i] - qm.lx[i]) / (2.0 * h);
            let an = if j < n { q.lxx[i * n + j] } else { q.lux[(j - n) * n + i] };
            assert_close(&format!("d2l/dx[{i}]dz[{j}]"), an, fd, 1e-6);
        }
        for i in 0..m {
            let fd = (qp.lu[i] - qm.lu[i]) / (2.0 * h);
            let an = if j < n { q.lux[i * n + j] } else { q.luu[i * m + (j - n)] };
            assert_close(&format!("d2l/du[{i}]dz[{j}]"), an, fd, 1e-6);
        }
    }
    c.quadratize_terminal(x, &mut q);
    assert_close("l_f", q.l, c.terminal(x), 1e-12);
    for j in 0..n {
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[j] += h;
        xm[j] -= h;
        assert_close(
            &format!("dl_f/dx[{j}]"),
            q.lx[j],
            (c.terminal(&xp) - c.terminal(&xm)) / (2.0 * h),
            1e-6,
        );
        c.quadratize_terminal(&xp, &mut qp);
        c.quadratize_terminal(&xm, &mut qm);
        for i in 0..n {
            let fd = (qp.lx[i] - qm.lx[i]) / (2.0 * h);
            assert_close(&format!("d2l_f/dx[{i}]dx[{j}]"), q.lxx[i * n + j], fd, 1e-6);
        }
    }
}
