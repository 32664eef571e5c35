-- Matomo 5 (GPL-3.0-or-later): core/Db/Schema/Mysql.php getTablesCreateSql() as the installer runs it on MariaDB,
-- with the `matomo_` table prefix and $tableOptions = ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
-- COLLATE=utf8mb4_general_ci; trimmed to the tables below (archive, report and tag-manager tables left out).
-- Matomo declares no foreign key.

CREATE TABLE matomo_user (
  login VARCHAR(100) NOT NULL,
  password VARCHAR(255) NOT NULL,
  email VARCHAR(100) NOT NULL,
  twofactor_secret VARCHAR(40) NOT NULL DEFAULT '',
  superuser_access TINYINT(2) unsigned NOT NULL DEFAULT '0',
  date_registered TIMESTAMP NULL,
  ts_password_modified TIMESTAMP NULL,
  idchange_last_viewed INTEGER UNSIGNED NULL,
  invited_by VARCHAR(100) NULL,
  invite_token VARCHAR(191) NULL,
  invite_link_token VARCHAR(191) NULL,
  invite_expired_at TIMESTAMP NULL,
  invite_accept_at TIMESTAMP NULL,
  ts_changes_shown TIMESTAMP NULL,
    PRIMARY KEY(login),
    UNIQUE INDEX `uniq_email` (`email`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_twofactor_recovery_code (
  idrecoverycode BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  login VARCHAR(100) NOT NULL,
  recovery_code VARCHAR(40) NOT NULL,
    PRIMARY KEY(idrecoverycode)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_access (
  idaccess INTEGER(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  login VARCHAR(100) NOT NULL,
  idsite INTEGER UNSIGNED NOT NULL,
  access VARCHAR(50) NULL,
    PRIMARY KEY(idaccess),
    INDEX index_loginidsite (login, idsite)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_site (
  idsite INTEGER(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(90) NOT NULL,
  main_url VARCHAR(255) NOT NULL,
    ts_created TIMESTAMP NULL,
    ecommerce TINYINT DEFAULT 0,
    sitesearch TINYINT DEFAULT 1,
    sitesearch_keyword_parameters TEXT NOT NULL,
    sitesearch_category_parameters TEXT NOT NULL,
    timezone VARCHAR( 50 ) NOT NULL,
    currency CHAR( 3 ) NOT NULL,
    exclude_unknown_urls TINYINT(1) DEFAULT 0,
    excluded_ips TEXT NOT NULL,
    excluded_parameters TEXT NOT NULL,
    excluded_user_agents TEXT NOT NULL,
    excluded_referrers TEXT NOT NULL,
    `group` VARCHAR(250) NOT NULL,
    `type` VARCHAR(255) NOT NULL,
    keep_url_fragment TINYINT NOT NULL DEFAULT 0,
    creator_login VARCHAR(100) NULL,
      PRIMARY KEY(idsite)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_plugin_setting (
  `plugin_name` VARCHAR(60) NOT NULL,
  `setting_name` VARCHAR(255) NOT NULL,
  `setting_value` LONGTEXT NOT NULL,
  `json_encoded` TINYINT UNSIGNED NOT NULL DEFAULT 0,
  `user_login` VARCHAR(100) NOT NULL DEFAULT '',
  `idplugin_setting` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  PRIMARY KEY (idplugin_setting),
  INDEX(plugin_name, user_login)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_site_url (
  idsite INTEGER(10) UNSIGNED NOT NULL,
  url VARCHAR(190) NOT NULL,
    PRIMARY KEY(idsite, url)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_log_action (
  idaction INTEGER(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(4096),
  hash INTEGER(10) UNSIGNED NOT NULL,
  type TINYINT UNSIGNED NULL,
  url_prefix TINYINT(2) NULL,
    PRIMARY KEY(idaction),
    INDEX index_type_hash (type, hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_log_visit (
  idvisit BIGINT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  idsite INTEGER(10) UNSIGNED NOT NULL,
  idvisitor BINARY(8) NOT NULL,
  visit_last_action_time DATETIME NOT NULL,
  config_id BINARY(8) NOT NULL,
  location_ip VARBINARY(16) NOT NULL,
    PRIMARY KEY(idvisit),
    INDEX index_idsite_config_datetime (idsite, config_id, visit_last_action_time),
    INDEX index_idsite_datetime (idsite, visit_last_action_time),
    INDEX index_idsite_idvisitor_time (idsite, idvisitor, visit_last_action_time DESC)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE matomo_log_link_visit_action (
  idlink_va BIGINT(10) UNSIGNED NOT NULL AUTO_INCREMENT,
  idsite int(10) UNSIGNED NOT NULL,
  idvisitor BINARY(8) NOT NULL,
  idvisit BIGINT(10) UNSIGNED NOT NULL,
  idaction_url_ref INTEGER(10) UNSIGNED NULL DEFAULT 0,
  idaction_name_ref INTEGER(10) UNSIGNED NULL,
  custom_float DOUBLE NULL DEFAULT NULL,
  pageview_position MEDIUMINT UNSIGNED DEFAULT NULL,
    PRIMARY KEY(idlink_va),
    INDEX index_idvisit(idvisit)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE `matomo_option` (
  option_name VARCHAR( 191 ) NOT NULL,
  option_value LONGTEXT NOT NULL,
  autoload TINYINT NOT NULL DEFAULT '1',
    PRIMARY KEY ( option_name ),
    INDEX autoload( autoload )
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci
