//! Signing in to the console: the password, then the authenticator code (or a recovery code), or, on a first
//! sign-in without a factor, its enrolment: a QR code, then the first code, then the recovery codes shown once.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;

use super::{
    ConsoleError, Member, Nav, PageResult, Visit, cleared_cookie, html, page, see_other,
    session_cookie,
};
use crate::api::authn::user_agent;
use crate::api::edge::client_ip;
use crate::domain::Sensitive;
use crate::error::AppError;
use crate::staff::console::{ConsoleSession, Stage};
use crate::staff::factor::FactorRefusal;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    nav: Nav,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "console/code.html")]
struct CodePage {
    nav: Nav,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/enrol.html")]
struct EnrolPage {
    nav: Nav,
    qr_svg: String,
    secret: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/recovery.html")]
struct RecoveryPage {
    nav: Nav,
    codes: Vec<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: Sensitive<String>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: Sensitive<String>,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    signed_out: Option<String>,
    welcome: Option<String>,
}

fn refusal_text(refusal: &FactorRefusal) -> String {
    match refusal {
        FactorRefusal::Throttled(wait) => format!(
            "Too many wrong codes: wait {} seconds before trying again.",
            wait.as_secs().max(1)
        ),
        _ => "That code is wrong or was used already. Try the code your app shows now.".to_owned(),
    }
}

fn pending(visit: &Visit, stage: Stage) -> Option<&ConsoleSession> {
    visit.session.as_ref().filter(|s| s.stage == stage)
}

async fn sign_in_page(visit: Visit, query: web::Query<SignInQuery>) -> PageResult {
    if visit.nav.signed_in() {
        return Ok(see_other("/staff/orders"));
    }
    page(&SignInPage {
        nav: visit.nav,
        error: None,
        notice: match (&query.signed_out, &query.welcome) {
            (Some(_), _) => Some("You are signed out. Sign in again to go on."),
            (_, Some(_)) => {
                Some("Your password is set. Sign in, then set up your authenticator app.")
            }
            _ => None,
        },
    })
}

async fn sign_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    visit: Visit,
    form: web::Form<SignInForm>,
) -> PageResult {
    let form = form.into_inner();
    let outcome = state
        .staff
        .console_sign_in(
            form.email.trim(),
            form.password,
            client_ip(&req),
            user_agent(&req),
        )
        .await;
    let (token, stage) = match outcome {
        Ok(done) => done,
        Err(AppError::Problem(p)) if p.status == 401 || p.status == 429 => {
            return Ok(html(
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::UNAUTHORIZED),
                &SignInPage {
                    nav: visit.nav,
                    error: Some(p.detail),
                    notice: None,
                },
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let next = match stage {
        Stage::Factor => "/staff/sign-in/code",
        Stage::Enrol => "/staff/enrol",
        Stage::SignedIn => "/staff/orders",
    };
    let mut response = see_other(next);
    response
        .add_cookie(&session_cookie(token.expose()))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("cookie: {e}")))?;
    Ok(response)
}

async fn code_page(visit: Visit) -> PageResult {
    if pending(&visit, Stage::Factor).is_none() {
        return Ok(see_other("/staff/sign-in"));
    }
    page(&CodePage {
        nav: visit.nav,
        error: None,
    })
}

async fn code(
    state: web::Data<AppState>,
    req: HttpRequest,
    visit: Visit,
    form: web::Form<CodeForm>,
) -> PageResult {
    let Some(session) = pending(&visit, Stage::Factor) else {
        return Ok(see_other("/staff/sign-in"));
    };
    match state
        .staff
        .console_code(session, form.into_inner().code, user_agent(&req))
        .await?
    {
        Ok(()) => Ok(see_other("/staff/orders")),
        Err(refusal) => Ok(html(
            StatusCode::UNAUTHORIZED,
            &CodePage {
                error: Some(refusal_text(&refusal)),
                nav: visit.nav,
            },
        )),
    }
}

async fn enrol_page(state: web::Data<AppState>, visit: Visit, error: Option<String>) -> PageResult {
    let Some(session) = pending(&visit, Stage::Enrol) else {
        return Ok(see_other("/staff/sign-in"));
    };
    let enrolment = state.staff.enrolment(&session.staff_id).await?;
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    Ok(html(
        status,
        &EnrolPage {
            nav: visit.nav,
            qr_svg: enrolment.qr_svg.into_inner(),
            secret: enrolment.secret.into_inner(),
            error,
        },
    ))
}

async fn enrol_form(state: web::Data<AppState>, visit: Visit) -> PageResult {
    enrol_page(state, visit, None).await
}

async fn enrol(
    state: web::Data<AppState>,
    req: HttpRequest,
    visit: Visit,
    form: web::Form<CodeForm>,
) -> PageResult {
    let Some(session) = pending(&visit, Stage::Enrol) else {
        return Ok(see_other("/staff/sign-in"));
    };
    match state
        .staff
        .console_enrol(session, form.into_inner().code, user_agent(&req))
        .await?
    {
        Ok(codes) => page(&RecoveryPage {
            nav: Nav {
                role: Some(session.role),
                ..visit.nav
            },
            codes: codes.into_iter().map(Sensitive::into_inner).collect(),
        }),
        Err(refusal) => enrol_page(state, visit, Some(refusal_text(&refusal))).await,
    }
}

async fn sign_out(state: web::Data<AppState>, member: Member) -> PageResult {
    state.staff.console_sign_out(&member.session).await?;
    let mut response = see_other("/staff/sign-in");
    response
        .add_cookie(&cleared_cookie())
        .map_err(|e| ConsoleError::App(AppError::Internal(anyhow::anyhow!("cookie: {e}"))))?;
    Ok(response)
}

#[derive(Template)]
#[template(path = "console/invitation.html")]
struct InvitationPage {
    nav: Nav,
    token: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: Sensitive<String>,
    again: Sensitive<String>,
}

async fn invitation_page(
    state: web::Data<AppState>,
    visit: Visit,
    token: web::Path<String>,
) -> PageResult {
    state.staff.check_invitation(&token).await?;
    page(&InvitationPage {
        nav: visit.nav,
        token: token.into_inner(),
        error: None,
    })
}

async fn accept_invitation(
    state: web::Data<AppState>,
    visit: Visit,
    token: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> PageResult {
    let form = form.into_inner();
    let refuse = |nav: Nav, token: String, error: String| {
        Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            &InvitationPage {
                nav,
                token,
                error: Some(error),
            },
        ))
    };
    if form.password.expose() != form.again.expose() {
        return refuse(
            visit.nav,
            token.into_inner(),
            "The two passwords differ.".into(),
        );
    }
    match state.staff.accept_invitation(&token, form.password).await {
        Ok(()) => Ok(see_other("/staff/sign-in?welcome=1")),
        Err(AppError::Problem(p)) if p.status == 422 => {
            refuse(visit.nav, token.into_inner(), p.detail)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sign-in")
            .route(web::get().to(sign_in_page))
            .route(web::post().to(sign_in)),
    )
    .service(
        web::resource("/sign-in/code")
            .route(web::get().to(code_page))
            .route(web::post().to(code)),
    )
    .service(
        web::resource("/enrol")
            .route(web::get().to(enrol_form))
            .route(web::post().to(enrol)),
    )
    .service(web::resource("/sign-out").route(web::post().to(sign_out)))
    .service(
        web::resource("/invitation/{token}")
            .route(web::get().to(invitation_page))
            .route(web::post().to(accept_invitation)),
    );
}
