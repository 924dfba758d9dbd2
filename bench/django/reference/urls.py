from django.urls import path
from knox import views as knox_views

from . import views

urlpatterns = [
    path("api/auth/register", views.RegisterView.as_view()),
    path("api/auth/login", views.LoginView.as_view()),
    path("api/auth/logout", knox_views.LogoutView.as_view()),
    path("api/auth/logoutall", knox_views.LogoutAllView.as_view()),
    path("api/auth/movies", views.Movies.as_view()),
    path("api/auth/rating", views.Ratings.as_view()),
]
